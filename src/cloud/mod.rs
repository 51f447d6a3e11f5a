//! Auto Scaling: the desired group (and the launch template paytool may make for it) from
//! a profile, a diff against AWS, the actions that close it, and sizing from a measured
//! load test. Nothing here prints.

pub mod aws;
pub mod converge;
pub mod ec2;
pub mod plan;
pub mod saved;
pub mod size;
pub mod state;
pub mod template;
pub mod user_data;
