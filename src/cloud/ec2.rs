//! The launch template paytool makes, through aws-sdk-ec2: read its latest version,
//! create it, add a version. Same credentials, region, endpoint, retries and timeouts as
//! the Auto Scaling client (`aws::config`).

use super::aws::{CloudError, cloud_error};
use super::template::{ObservedTemplate, TemplateData};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// EC2's answer when no template has the name.
const NOT_FOUND: &str = "InvalidLaunchTemplateName.NotFoundException";

pub fn client(config: &aws_config::SdkConfig) -> Client {
    Client::new(config)
}

/// The template named `name`, as its latest version says, if it exists.
pub async fn observe(client: &Client, name: &str) -> Result<Option<ObservedTemplate>, CloudError> {
    let out = match client
        .describe_launch_template_versions()
        .launch_template_name(name)
        .versions("$Latest")
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some(NOT_FOUND) => return Ok(None),
        Err(e) => return Err(cloud_error("DescribeLaunchTemplateVersions", e)),
    };
    let Some(v) = out.launch_template_versions().first() else {
        return Ok(None);
    };
    let d = v.launch_template_data();
    let user_data = d
        .and_then(|d| d.user_data())
        .map(|b| {
            BASE64
                .decode(b)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                // Not paytool's: it differs from any script, so a new version replaces it.
                .unwrap_or_else(|| format!("(user data that is not base64 text: {b})"))
        })
        .unwrap_or_default();
    let mut security_group_ids: Vec<String> = d
        .map(|d| d.security_group_ids().to_vec())
        .unwrap_or_default();
    security_group_ids.sort();
    Ok(Some(ObservedTemplate {
        name: name.to_string(),
        latest_version: v.version_number().unwrap_or(0),
        data: TemplateData {
            image_id: d.and_then(|d| d.image_id()).unwrap_or_default().to_string(),
            instance_type: d
                .and_then(|d| d.instance_type())
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            user_data,
            iam_instance_profile: d
                .and_then(|d| d.iam_instance_profile())
                .and_then(|p| p.name())
                .map(str::to_string),
            security_group_ids,
        },
    }))
}

fn request(data: &TemplateData) -> RequestLaunchTemplateData {
    RequestLaunchTemplateData::builder()
        .image_id(&data.image_id)
        .instance_type(InstanceType::from(data.instance_type.as_str()))
        .user_data(BASE64.encode(data.user_data.as_bytes()))
        .set_iam_instance_profile(data.iam_instance_profile.as_ref().map(|n| {
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(n)
                .build()
        }))
        .set_security_group_ids(
            (!data.security_group_ids.is_empty()).then(|| data.security_group_ids.clone()),
        )
        .build()
}

pub async fn create(client: &Client, name: &str, data: &TemplateData) -> Result<(), CloudError> {
    client
        .create_launch_template()
        .launch_template_name(name)
        .version_description("paytool scale apply")
        .launch_template_data(request(data))
        .send()
        .await
        .map_err(|e| cloud_error("CreateLaunchTemplate", e))?;
    Ok(())
}

pub async fn add_version(
    client: &Client,
    name: &str,
    data: &TemplateData,
) -> Result<(), CloudError> {
    client
        .create_launch_template_version()
        .launch_template_name(name)
        .version_description("paytool scale apply")
        .launch_template_data(request(data))
        .send()
        .await
        .map_err(|e| cloud_error("CreateLaunchTemplateVersion", e))?;
    Ok(())
}
