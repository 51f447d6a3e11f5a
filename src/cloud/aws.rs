//! Auto Scaling through aws-sdk-autoscaling: read a group into `Observed`, make a plan's
//! actions, report status, destroy. Credentials come only from the standard chain.

use super::plan::{Action, GroupUpdate};
use super::state::{Launch, Observed, Policy};
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::types::{
    AutoScalingGroup, LaunchTemplateSpecification, MetricType, PredefinedMetricSpecification, Tag,
    TargetTrackingConfiguration,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Attempts per call, with the SDK's exponential backoff (throttling is retried).
const ATTEMPTS_MAX: u32 = 3;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("{operation}: {code}: {message}{}", hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
pub struct CloudError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
}

pub(super) fn cloud_error<E>(operation: &'static str, e: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message) = match &e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let body = s
                .raw()
                .body()
                .bytes()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            (
                s.err().code().unwrap_or("ServiceError").to_string(),
                match s.err().message() {
                    Some(m) => format!("{m} (HTTP {status})"),
                    None => format!(
                        "HTTP {status}: {}",
                        html_title(&body).unwrap_or(body.trim())
                    ),
                },
            )
        }
        SdkError::DispatchFailure(_) => ("DispatchFailure".to_string(), source_chain(&e)),
        SdkError::TimeoutError(_) => (
            "Timeout".to_string(),
            format!("no answer within {CALL_TIMEOUT:?}"),
        ),
        SdkError::ConstructionFailure(_) => ("ConstructionFailure".to_string(), source_chain(&e)),
        other => ("Error".to_string(), source_chain(other)),
    };
    let text = format!("{code} {message}").to_lowercase();
    let hint = if text.contains("credential") || text.contains("imds") {
        Some("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --aws-profile / AWS_PROFILE".into())
    } else if text.contains("region") {
        Some("no or wrong region: pass --region or set AWS_REGION".into())
    } else if text.contains("throttl") || text.contains("rate exceeded") {
        Some(format!(
            "AWS throttled the calls and {ATTEMPTS_MAX} attempts with backoff did not get through; try again later"
        ))
    } else if code == "DispatchFailure" || code == "Timeout" {
        Some(
            "the endpoint did not answer: check --endpoint-url / AWS_ENDPOINT_URL and the network"
                .into(),
        )
    } else if text.contains("not yet been implemented")
        || text.contains("not implemented")
        || text.contains("http 500")
    {
        Some("this endpoint does not implement the call (moto lacks some Auto Scaling APIs, such as instance refresh)".into())
    } else {
        None
    };
    CloudError {
        operation,
        code,
        message,
        hint,
    }
}

/// An HTML error page's <title>, which says more in less than its body.
fn html_title(body: &str) -> Option<&str> {
    let start = body.find("<title>")? + "<title>".len();
    let end = body[start..].find("</title>")? + start;
    Some(body[start..end].trim())
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
}

pub async fn client(opts: &AwsOptions) -> Client {
    Client::new(&config(opts).await)
}

/// The SDK configuration every client here shares: the standard credential chain, the
/// region, endpoint and profile given, `ATTEMPTS_MAX` attempts and `CALL_TIMEOUT`.
pub async fn config(opts: &AwsOptions) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(ATTEMPTS_MAX))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(CALL_TIMEOUT)
                .build(),
        );
    if let Some(r) = &opts.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &opts.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

/// The group named `name`, if it exists.
async fn describe(client: &Client, name: &str) -> Result<Option<AutoScalingGroup>, CloudError> {
    let out = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .map_err(|e| cloud_error("DescribeAutoScalingGroups", e))?;
    Ok(out
        .auto_scaling_groups()
        .iter()
        .find(|g| g.auto_scaling_group_name() == Some(name))
        .cloned())
}

pub async fn observe(client: &Client, name: &str) -> Result<Option<Observed>, CloudError> {
    let Some(g) = describe(client, name).await? else {
        return Ok(None);
    };
    let launch = match (g.launch_configuration_name(), g.launch_template()) {
        (Some(lc), _) => Some(Launch::Configuration(lc.to_string())),
        (None, Some(t)) => Some(Launch::Template {
            name: t.launch_template_name().map(str::to_string),
            id: t.launch_template_id().map(str::to_string),
            version: t.version().map(str::to_string),
        }),
        (None, None) => None,
    };
    let mut zones: Vec<String> = g.availability_zones().to_vec();
    zones.sort();
    let mut subnets: Vec<String> = g
        .vpc_zone_identifier()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    subnets.sort();
    let tags = g
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let policies = client
        .describe_policies()
        .auto_scaling_group_name(name)
        .send()
        .await
        .map_err(|e| cloud_error("DescribePolicies", e))?;
    let mut found = BTreeMap::new();
    for p in policies.scaling_policies() {
        let (Some(pname), Some(tt)) = (p.policy_name(), p.target_tracking_configuration()) else {
            continue;
        };
        let spec = tt.predefined_metric_specification();
        found.insert(
            pname.to_string(),
            Policy {
                metric: spec
                    .and_then(|s| s.predefined_metric_type())
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                target: tt.target_value().unwrap_or_default(),
                resource_label: spec.and_then(|s| s.resource_label()).map(str::to_string),
                disable_scale_in: tt.disable_scale_in().unwrap_or(false),
                instance_warmup: p.estimated_instance_warmup(),
            },
        );
    }
    Ok(Some(Observed {
        name: name.to_string(),
        min: g.min_size().unwrap_or_default(),
        max: g.max_size().unwrap_or_default(),
        desired: g.desired_capacity().unwrap_or_default(),
        launch,
        zones,
        subnets,
        health_check_type: g.health_check_type().map(str::to_string),
        health_check_grace_period: g.health_check_grace_period(),
        default_instance_warmup: g.default_instance_warmup(),
        tags,
        policies: found,
    }))
}

fn launch_spec(l: &Launch) -> Option<LaunchTemplateSpecification> {
    match l {
        Launch::Configuration(_) => None,
        Launch::Template { name, id, version } => Some(
            LaunchTemplateSpecification::builder()
                .set_launch_template_name(name.clone())
                .set_launch_template_id(id.clone())
                .set_version(version.clone())
                .build(),
        ),
    }
}

fn tag(group: &str, k: &str, v: Option<&str>) -> Tag {
    Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(k)
        .set_value(v.map(str::to_string))
        .propagate_at_launch(true)
        .build()
}

/// Make one planned change.
pub async fn apply(client: &Client, group: &str, action: &Action) -> Result<(), CloudError> {
    match action {
        Action::CreateGroup { desired, capacity } => {
            let d = desired;
            let mut req = client
                .create_auto_scaling_group()
                .auto_scaling_group_name(group)
                .min_size(d.min)
                .max_size(d.max)
                .desired_capacity(*capacity)
                .set_health_check_type(d.health_check_type.clone())
                .set_health_check_grace_period(d.health_check_grace_period)
                .set_default_instance_warmup(d.default_instance_warmup)
                .set_launch_template(launch_spec(&d.launch));
            if let Launch::Configuration(lc) = &d.launch {
                req = req.launch_configuration_name(lc);
            }
            if !d.zones.is_empty() {
                req = req.set_availability_zones(Some(d.zones.clone()));
            }
            if !d.subnets.is_empty() {
                req = req.vpc_zone_identifier(d.subnets.join(","));
            }
            for (k, v) in &d.tags {
                req = req.tags(tag(group, k, Some(v)));
            }
            req.send()
                .await
                .map_err(|e| cloud_error("CreateAutoScalingGroup", e))?;
        }
        Action::UpdateGroup { update } => {
            let GroupUpdate {
                min,
                max,
                desired,
                launch,
                zones,
                subnets,
                health_check_type,
                health_check_grace_period,
                default_instance_warmup,
            } = update;
            let mut req = client
                .update_auto_scaling_group()
                .auto_scaling_group_name(group)
                .set_min_size(*min)
                .set_max_size(*max)
                .set_desired_capacity(*desired)
                .set_availability_zones(zones.clone())
                .set_vpc_zone_identifier(subnets.as_ref().map(|s| s.join(",")))
                .set_health_check_type(health_check_type.clone())
                .set_health_check_grace_period(*health_check_grace_period)
                .set_default_instance_warmup(*default_instance_warmup);
            match launch {
                Some(Launch::Configuration(lc)) => req = req.launch_configuration_name(lc),
                Some(l) => req = req.set_launch_template(launch_spec(l)),
                None => {}
            }
            req.send()
                .await
                .map_err(|e| cloud_error("UpdateAutoScalingGroup", e))?;
        }
        Action::PutPolicy { name, policy } => {
            let spec = PredefinedMetricSpecification::builder()
                .predefined_metric_type(MetricType::from(policy.metric.as_str()))
                .set_resource_label(policy.resource_label.clone())
                .build();
            let config = TargetTrackingConfiguration::builder()
                .predefined_metric_specification(spec)
                .target_value(policy.target)
                .disable_scale_in(policy.disable_scale_in)
                .build();
            client
                .put_scaling_policy()
                .auto_scaling_group_name(group)
                .policy_name(name)
                .policy_type("TargetTrackingScaling")
                .target_tracking_configuration(config)
                .set_estimated_instance_warmup(policy.instance_warmup)
                .send()
                .await
                .map_err(|e| cloud_error("PutScalingPolicy", e))?;
        }
        Action::DeletePolicy { name } => {
            client
                .delete_policy()
                .auto_scaling_group_name(group)
                .policy_name(name)
                .send()
                .await
                .map_err(|e| cloud_error("DeletePolicy", e))?;
        }
        Action::PutTags { tags } => {
            let tags: Vec<Tag> = tags.iter().map(|(k, v)| tag(group, k, Some(v))).collect();
            client
                .create_or_update_tags()
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| cloud_error("CreateOrUpdateTags", e))?;
        }
        Action::DeleteTags { keys } => {
            let tags: Vec<Tag> = keys.iter().map(|k| tag(group, k, None)).collect();
            client
                .delete_tags()
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| cloud_error("DeleteTags", e))?;
        }
        Action::CreateLaunchTemplate { .. } | Action::CreateLaunchTemplateVersion { .. } => {
            return Err(CloudError {
                operation: "apply",
                code: "NotAnAutoScalingCall".into(),
                message: "a launch template action goes through EC2 (cloud::ec2)".into(),
                hint: None,
            });
        }
        Action::DeleteGroup => {
            client
                .delete_auto_scaling_group()
                .auto_scaling_group_name(group)
                .force_delete(true)
                .send()
                .await
                .map_err(|e| cloud_error("DeleteAutoScalingGroup", e))?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub zone: String,
    pub lifecycle: String,
    pub health: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ActivityStatus {
    pub time: String,
    pub status: String,
    pub description: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupStatus {
    pub group: Observed,
    pub instances: Vec<InstanceStatus>,
    pub activities: Vec<ActivityStatus>,
}

pub const ACTIVITIES_SHOWN_MAX: i32 = 10;

pub async fn status(client: &Client, name: &str) -> Result<Option<GroupStatus>, CloudError> {
    let Some(group) = observe(client, name).await? else {
        return Ok(None);
    };
    Ok(Some(GroupStatus {
        group,
        instances: instances(client, name).await?,
        activities: activities(client, name).await?,
    }))
}

pub async fn instances(client: &Client, name: &str) -> Result<Vec<InstanceStatus>, CloudError> {
    Ok(describe(client, name)
        .await?
        .iter()
        .flat_map(|g| g.instances())
        .map(|i| InstanceStatus {
            id: i.instance_id().unwrap_or_default().to_string(),
            zone: i.availability_zone().unwrap_or_default().to_string(),
            lifecycle: i
                .lifecycle_state()
                .map(|l| l.as_str().to_string())
                .unwrap_or_default(),
            health: i.health_status().unwrap_or_default().to_string(),
        })
        .collect())
}

async fn activities(client: &Client, name: &str) -> Result<Vec<ActivityStatus>, CloudError> {
    let out = client
        .describe_scaling_activities()
        .auto_scaling_group_name(name)
        .max_records(ACTIVITIES_SHOWN_MAX)
        .send()
        .await
        .map_err(|e| cloud_error("DescribeScalingActivities", e))?;
    Ok(out
        .activities()
        .iter()
        .map(|a| ActivityStatus {
            time: a.start_time().map(|t| t.to_string()).unwrap_or_default(),
            status: a
                .status_code()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            description: a.description().unwrap_or_default().to_string(),
        })
        .collect())
}

/// Start an instance refresh (rolling replacement after a launch change).
pub async fn start_refresh(client: &Client, name: &str) -> Result<String, CloudError> {
    let out = client
        .start_instance_refresh()
        .auto_scaling_group_name(name)
        .send()
        .await
        .map_err(|e| cloud_error("StartInstanceRefresh", e))?;
    Ok(out.instance_refresh_id().unwrap_or_default().to_string())
}

/// Wait, with the SDK's GroupInService waiter, until InService instances reach the group's
/// minimum; bounded by `max_wait`.
pub async fn wait_in_service(
    client: &Client,
    name: &str,
    max_wait: Duration,
) -> Result<(), CloudError> {
    use aws_sdk_autoscaling::client::Waiters;
    client
        .wait_until_group_in_service()
        .auto_scaling_group_names(name)
        .wait(max_wait)
        .await
        .map(|_| ())
        .map_err(|e| CloudError {
            operation: "wait for GroupInService",
            code: "WaiterError".into(),
            message: source_chain(&e),
            hint: Some(format!(
                "InService instances did not reach the minimum within {max_wait:?}"
            )),
        })
}
