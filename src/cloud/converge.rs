//! Apply a plan, then plan again: what was applied must now plan as no change. A row
//! left means the API (or an emulator) did not keep what it was sent, and every later
//! apply would send it again; so it is a failure for the caller, never a warning.

use super::aws::{self, CloudError};
use super::ec2;
use super::plan::{self, Action, Plan};
use super::state::Desired;
use super::template::WantedTemplate;

/// The clients a scale profile needs: Auto Scaling, and EC2 for a template paytool makes.
pub struct Clients {
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Clients {
    pub async fn new(opts: &aws::AwsOptions) -> Clients {
        let config = aws::config(opts).await;
        Clients {
            autoscaling: aws_sdk_autoscaling::Client::new(&config),
            ec2: ec2::client(&config),
        }
    }
}

/// What AWS has against what the profile wants: the group, and the launch template when
/// paytool makes one.
pub async fn plan(
    clients: &Clients,
    desired: &Desired,
    template: Option<&WantedTemplate>,
) -> Result<Plan, CloudError> {
    let p = plan::diff(
        desired,
        &aws::observe(&clients.autoscaling, &desired.name).await?,
    );
    Ok(match template {
        Some(t) => p.with_template(t, &ec2::observe(&clients.ec2, &t.name).await?),
        None => p,
    })
}

#[derive(Clone, Debug)]
pub struct Applied {
    /// Actions made.
    pub actions: usize,
    /// The plan from the group as read back after the actions: empty when it converged.
    pub remaining: Plan,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "apply did not converge: {}, read back after the apply, still differs from the profile in {}; the endpoint did not keep what it was sent",
    remaining.group,
    remaining.rows.iter().map(|r| r.subject()).collect::<Vec<_>>().join(", ")
)]
pub struct NotConverged {
    pub remaining: Plan,
}

impl Applied {
    pub fn converged(&self) -> Result<(), NotConverged> {
        converged(&self.remaining)
    }
}

/// The decision on the plan read back after an apply.
pub fn converged(remaining: &Plan) -> Result<(), NotConverged> {
    if remaining.is_empty() {
        Ok(())
    } else {
        Err(NotConverged {
            remaining: remaining.clone(),
        })
    }
}

/// Make `plan`'s actions in order, then plan again.
pub async fn apply(
    clients: &Clients,
    desired: &Desired,
    template: Option<&WantedTemplate>,
    plan: &Plan,
) -> Result<Applied, CloudError> {
    for action in &plan.actions {
        match action {
            Action::CreateLaunchTemplate { name, data } => {
                ec2::create(&clients.ec2, name, data).await?
            }
            Action::CreateLaunchTemplateVersion { name, data } => {
                ec2::add_version(&clients.ec2, name, data).await?
            }
            group => aws::apply(&clients.autoscaling, &plan.group, group).await?,
        }
    }
    let remaining = self::plan(clients, desired, template).await?;
    Ok(Applied {
        actions: plan.actions.len(),
        remaining,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::state::fixtures::{observed, want};

    #[test]
    fn a_group_read_back_as_wanted_has_converged() {
        let w = want();
        assert!(converged(&plan::diff(&w, &Some(observed(&w)))).is_ok());
    }

    #[test]
    fn an_attribute_the_endpoint_dropped_is_a_failure_naming_it() {
        // moto 5 accepts DefaultInstanceWarmup and reads the group back without it.
        let mut w = want();
        w.default_instance_warmup = Some(60);
        let read_back = observed(&w);
        assert_eq!(read_back.default_instance_warmup, None);
        let err = converged(&plan::diff(&w, &Some(read_back))).unwrap_err();
        assert_eq!(err.remaining.rows.len(), 1);
        let message = err.to_string();
        assert!(
            message.contains("group.default_instance_warmup")
                && message.contains("payment-api-group"),
            "{message}"
        );
    }
}
