//! `paytool scale` against a real moto server, checked with boto3.

use crate::moto::{Moto, code_and_text};
use crate::support::{BIN, COMMAND_TIMEOUT, json_stdout, loadtest, paytool, run_bounded, temp_dir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/profiles/scale/payment-api-group.toml"
);
const AUTOSCALED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/profiles/scale/payment-api-autoscaled.toml"
);
/// The load profile whose find-max report `scale size` reads.
const OPEN_CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/open-checkout.toml");

fn describe(moto: &Moto) -> Value {
    let out = moto.boto3(
        "g = c.describe_auto_scaling_groups(AutoScalingGroupNames=['payment-api-group'])['AutoScalingGroups']\n\
         print(json.dumps(g, default=str))",
    );
    serde_json::from_str(&out).unwrap()
}

/// The launch configuration the seed profile names: paytool does not manage it.
fn create_launch_configuration(moto: &Moto) {
    moto.boto3(
        "c.create_launch_configuration(LaunchConfigurationName='payment-api-launch-config', \
         ImageId='ami-12c6146b', InstanceType='t3.micro')",
    );
}

/// A moto in which `scale apply` made the seed profile's group.
fn with_the_seed_group() -> Moto {
    let moto = Moto::start();
    create_launch_configuration(&moto);
    let (code, _, err) = moto.paytool(&["scale", "apply", "-p", SEED, "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    moto
}

fn edited(dir: &Path, from: &str, replace: &str, with: &str) -> PathBuf {
    let text = std::fs::read_to_string(from).unwrap();
    assert!(text.contains(replace), "{replace} not in {from}");
    let path = dir.join("profile.toml");
    std::fs::write(&path, text.replacen(replace, with, 1)).unwrap();
    path
}

#[test]
fn the_seed_example_is_planned_created_changed_and_destroyed() {
    let moto = Moto::start();
    create_launch_configuration(&moto);
    let (code, out, err) = moto.paytool(&["scale", "plan", "-p", SEED]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("+ group") && out.contains("payment-api-group"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 1 to create, 0 to update, 0 to delete."),
        "{out}"
    );

    let (code, out, err) = moto.paytool(&[
        "scale",
        "apply",
        "-p",
        SEED,
        "--yes",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    let groups = describe(&moto);
    let g = &groups[0];
    assert_eq!(
        (
            g["MinSize"].as_i64(),
            g["MaxSize"].as_i64(),
            g["DesiredCapacity"].as_i64()
        ),
        (Some(1), Some(10), Some(5))
    );
    assert_eq!(g["LaunchConfigurationName"], "payment-api-launch-config");
    let mut zones: Vec<&str> = g["AvailabilityZones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z.as_str().unwrap())
        .collect();
    zones.sort();
    assert_eq!(zones, ["us-west-2a", "us-west-2b"]);

    // Applied: nothing left to plan, and a second apply changes nothing.
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", SEED]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = moto.paytool(&["scale", "apply", "-p", SEED, "--yes", "--output", "json"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["applied"], 0);

    // Raising max to 20 plans exactly one ~ row.
    let dir = temp_dir();
    let bigger = edited(dir.path(), SEED, "max = 10", "max = 20");
    let (code, out, err) = moto.paytool(&[
        "scale",
        "plan",
        "-p",
        bigger.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code, Some(2), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    let rows = plan["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{plan:#}");
    assert_eq!(
        (rows[0]["op"].as_str(), rows[0]["attribute"].as_str()),
        (Some("~"), Some("max"))
    );
    assert_eq!(
        (rows[0]["old"].as_str(), rows[0]["new"].as_str()),
        (Some("10"), Some("20"))
    );

    let (code, out, err) = moto.paytool(&["scale", "status", "-p", SEED, "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["instances"].as_array().unwrap().len(), 5);

    let (code, out, err) = moto.paytool(&["scale", "destroy", "-p", SEED, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(describe(&moto), Value::Array(vec![]));
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", SEED]);
    assert_eq!(code, Some(2), "{out}");
}

/// `plan` follows Terraform's -detailed-exitcode (2 is "changes pending"), so an invalid
/// profile is 1 there; other commands keep 2 for it.
#[test]
fn invalid_profiles_are_named_before_any_call_plan_exits_1_others_2() {
    let dir = temp_dir();
    let cases = [
        (SEED, "min = 1", "min = 11", "group.min"),
        (SEED, "desired = 5", "desired = 50", "group.desired"),
        (
            SEED,
            "us-west-2b",
            "us-west-2",
            "group.availability_zones[1]",
        ),
        (
            SEED,
            "launch_configuration = ",
            "launch_configurations = ",
            "launch_configurations",
        ),
        (
            AUTOSCALED,
            "ASGAverageCPUUtilization",
            "CPU",
            "policies[0].metric",
        ),
        (
            AUTOSCALED,
            "resource_label = \"app/payment-api/50dc6c495c0c9188/targetgroup/payment-api/943f017f100becff\"",
            "",
            "policies[1].resource_label",
        ),
    ];
    for ((base, from, to, key), (command, code)) in cases
        .into_iter()
        .flat_map(|case| [(case, ("plan", 1)), (case, ("status", 2))])
    {
        let profile = edited(dir.path(), base, from, to);
        // An endpoint where nothing listens: any AWS call would fail differently.
        let out = run_bounded(
            Command::new(BIN)
                .args([
                    "scale",
                    command,
                    "-p",
                    profile.to_str().unwrap(),
                    "--endpoint-url",
                    "http://127.0.0.1:9",
                    "--region",
                    "us-west-2",
                ])
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test"),
            COMMAND_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{command} {key}: {err}");
        assert!(
            err.contains(key) && err.contains("profile.toml"),
            "{key}: {err}"
        );
        assert!(
            !err.contains("DispatchFailure"),
            "{command} {key}: an AWS call was made: {err}"
        );
    }
}

/// moto 5 accepts DefaultInstanceWarmup and reads the group back without it, as an API
/// that drops an attribute would: the apply cannot converge, and must say so.
#[test]
fn an_apply_that_does_not_converge_fails_with_the_rows_left() {
    let moto = Moto::start();
    create_launch_configuration(&moto);
    let dir = temp_dir();
    let warmup = edited(
        dir.path(),
        SEED,
        "max = 10",
        "max = 10\ndefault_instance_warmup = 60",
    );
    let warmup = warmup.to_str().unwrap();
    let (code, out, err) = moto.paytool(&["scale", "apply", "-p", warmup, "--yes"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("Still different after the apply:")
            && out.contains("~ group.default_instance_warmup")
            && out.contains("-> 60"),
        "{out}"
    );
    assert!(
        err.contains("did not converge") && err.contains("group.default_instance_warmup"),
        "{err}"
    );
    // Independently: the group was made, without the warmup.
    let g = &describe(&moto)[0];
    assert_eq!(g["MaxSize"], 10);
    assert!(g.get("DefaultInstanceWarmup").is_none(), "{g:#}");

    // Again, as JSON: the one update is sent again, and the same row is left.
    let (code, out, err) =
        moto.paytool(&["scale", "apply", "-p", warmup, "--yes", "--output", "json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let applied: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&applied["applied"], &applied["converged"]),
        (&Value::from(1), &Value::Bool(false)),
        "{applied:#}"
    );
    let remaining = applied["remaining"].as_array().unwrap();
    assert_eq!(remaining.len(), 1, "{applied:#}");
    assert_eq!(
        (
            remaining[0]["attribute"].as_str(),
            remaining[0]["new"].as_str()
        ),
        (Some("default_instance_warmup"), Some("60"))
    );
    let (code, _, _) = moto.paytool(&["scale", "plan", "-p", warmup]);
    assert_eq!(code, Some(2), "still pending");
}

#[test]
fn a_saved_plan_is_refused_once_the_group_changed() {
    let moto = with_the_seed_group();
    let dir = temp_dir();
    let bigger = edited(dir.path(), SEED, "max = 10", "max = 20");
    let bigger = bigger.to_str().unwrap();
    let saved = dir.path().join("plan.json");
    let saved = saved.to_str().unwrap();
    let (code, _, _) = moto.paytool(&["scale", "plan", "-p", bigger, "--out", saved]);
    assert_eq!(code, Some(2));
    // Someone changes the group behind the plan's back.
    moto.boto3(
        "c.update_auto_scaling_group(AutoScalingGroupName='payment-api-group', DesiredCapacity=3)",
    );
    let (code, out, err) =
        moto.paytool(&["scale", "apply", "-p", bigger, "--plan", saved, "--yes"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("no longer matches"), "{err}");
    assert_eq!(describe(&moto)[0]["MaxSize"], 10, "nothing was applied");
    // Without a saved plan, apply makes the group match again.
    let (code, _, err) = moto.paytool(&["scale", "apply", "-p", bigger, "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    let g = &describe(&moto)[0];
    assert_eq!(
        (g["MaxSize"].as_i64(), g["DesiredCapacity"].as_i64()),
        (Some(20), Some(5))
    );
}

#[test]
fn calls_moto_lacks_and_missing_credentials_get_clear_errors() {
    let moto = with_the_seed_group();
    let (code, _, err) = moto.paytool(&["scale", "refresh", "-p", SEED, "--yes"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("StartInstanceRefresh") && err.contains("does not implement"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    let home = temp_dir();
    let out = run_bounded(
        Command::new(BIN)
            .args([
                "scale",
                "plan",
                "-p",
                SEED,
                "--endpoint-url",
                &moto.endpoint,
                "--region",
                "us-west-2",
            ])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true"),
        COMMAND_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no AWS credentials found"), "{err}");
}

/// A find-max run of the open-checkout profile (100 to 200 req/s, 1 s a step), written
/// to `reports`; its run directory.
fn find_max_run(reports: &Path) -> PathBuf {
    let out = loadtest(
        &[
            "-p",
            OPEN_CHECKOUT,
            "--merchants",
            "3",
            "--rate",
            "100/s",
            "--run-time",
            "1s",
            "--find-max",
            "--rate-max",
            "200",
            "--threshold",
            "p99_ms_max=5000",
            "--output",
            "json",
            "--report-dir",
            reports.to_str().unwrap(),
        ],
        None,
    );
    let search = json_stdout(&out);
    assert_eq!(search["best_rate_per_s"], 200.0);
    std::fs::read_dir(reports)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[test]
fn size_turns_a_find_max_report_into_instances_and_gates_on_max() {
    let reports = temp_dir();
    let run = find_max_run(reports.path());

    // 200 req/s per instance at 50% = 100 usable; ceil(550/100) = 6; x 2/1 zones = 12.
    let size = |extra: &[&str]| {
        let scale_size = [
            "scale",
            "size",
            "--report",
            run.to_str().unwrap(),
            "--peak-rps",
            "550",
            "--utilization",
            "0.5",
        ];
        code_and_text(&paytool(&[&scale_size, extra].concat()))
    };
    let (code, out, _) = size(&["--output", "json"]);
    assert_eq!(code, Some(0), "{out}");
    let sizing: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(sizing["sizing"]["for_peak"], 6);
    assert_eq!(sizing["sizing"]["instances"], 12);
    // The seed profile spans 2 zones with max 10: too small, the gate fails.
    let (code, out, _) = size(&["-p", SEED]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("max 10 is below the 12 instances needed"),
        "{out}"
    );
    let dir = temp_dir();
    let bigger = edited(dir.path(), SEED, "max = 10", "max = 20");
    let (code, out, _) = size(&["-p", bigger.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ceil(peak 550.0 / 100.0) = 6"), "{out}");

    // A truncated find-max.json is an error naming it, not a silent fallback to the
    // run's summary.json (which is still there and valid).
    let find_max = run.join("find-max.json");
    let text = std::fs::read_to_string(&find_max).unwrap();
    std::fs::write(&find_max, &text[..text.len() / 2]).unwrap();
    assert!(run.join("summary.json").is_file());
    let (code, out, err) = size(&[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        err.contains(find_max.to_str().unwrap()) && err.contains("corrupt") && err.contains("line"),
        "{err}"
    );
    assert!(out.is_empty(), "sized anyway: {out}");
}

#[test]
fn a_policy_owned_capacity_is_left_alone() {
    let moto = Moto::start();
    moto.boto3(
        "ec2.create_launch_template(LaunchTemplateName='payment-api', \
         LaunchTemplateData={'ImageId': 'ami-12c6146b', 'InstanceType': 't3.micro'})",
    );
    let (code, out, err) = moto.paytool(&["scale", "apply", "-p", AUTOSCALED, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let policies = moto.boto3(
        "p = c.describe_policies(AutoScalingGroupName='payment-api-group')['ScalingPolicies']\n\
         print(json.dumps(sorted((x['PolicyName'], x['TargetTrackingConfiguration']['PredefinedMetricSpecification']['PredefinedMetricType']) for x in p)))",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&policies).unwrap(),
        serde_json::json!([
            ["cpu-50", "ASGAverageCPUUtilization"],
            ["requests-per-target", "ALBRequestCountPerTarget"]
        ])
    );
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", AUTOSCALED]);
    assert_eq!(code, Some(0), "{out}");
    // The policy scales the group to 7: within [2, 20], so the plan leaves it.
    moto.boto3(
        "c.set_desired_capacity(AutoScalingGroupName='payment-api-group', DesiredCapacity=7)",
    );
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", AUTOSCALED]);
    assert_eq!(code, Some(0), "{out}");
    // Lowering max below it clamps desired along with max.
    let dir = temp_dir();
    let smaller = edited(dir.path(), AUTOSCALED, "max = 20", "max = 6");
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", smaller.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        out.contains("group.desired") && out.contains("7 -> 6"),
        "{out}"
    );
}
