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

/// The boot script's outside world on a test machine: the AWS CLI answers as SSM would
/// (and only for the profile's path), systemctl records what it is asked, and the user
/// and owner changes succeed. Everything else the script does is real.
fn instance_stubs(dir: &Path, ssm_path: &str) -> PathBuf {
    let bin = dir.join("stubs");
    std::fs::create_dir_all(&bin).unwrap();
    let stubs = [
        (
            "aws",
            format!(
                "#!/bin/sh\ncase \"$*\" in\n  *\"ssm get-parameters-by-path --path {ssm_path} \"*) \
                 printf '{ssm_path}PAYTOOL_SHARD_S0_URL\\t%s\\n{ssm_path}PAYTOOL_ADMIN_TOKEN\\t%s\\n' \
                 \"$SSM_SHARD_URL\" \"$SSM_ADMIN_TOKEN\" ;;\n  *) echo \"unexpected: aws $*\" >&2; exit 1 ;;\nesac\n"
            ),
        ),
        (
            "systemctl",
            "#!/bin/sh\necho \"$*\" >> \"$PAYTOOL_ROOT/systemctl.log\"\n".into(),
        ),
        ("id", "#!/bin/sh\nexit 0\n".into()),
        ("useradd", "#!/bin/sh\nexit 0\n".into()),
        ("chown", "#!/bin/sh\nexit 0\n".into()),
    ];
    for (name, text) in stubs {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    bin
}

/// `KEY=value` lines (a systemd EnvironmentFile).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_template_paytool_makes_boots_the_api_from_its_user_data_and_changes_are_new_versions() {
    const SSM_PATH: &str = "/paytool/test/";
    const TOKEN: &str = "adm_user_data";
    let moto = Moto::start();
    let dir = temp_dir();
    let pg = crate::support::small_postgres(&dir.path().join("pg"));
    pg.create_database("paytool_s0").unwrap();
    let layout = dir.path().join("layout.toml");
    let layout_text = "name = \"one\"\nversion = 1\nbuckets = 1024\n[shards.s0]\n\
                       url = \"${PAYTOOL_SHARD_S0_URL}\"\n[[ranges]]\nbuckets = \"0-1023\"\nshard = \"s0\"\n";
    std::fs::write(&layout, layout_text).unwrap();
    let port = crate::support::free_port();
    let profile = dir.path().join("profile.toml");
    std::fs::write(
        &profile,
        format!(
            "[group]\nname = \"payment-api-group\"\nmin = 1\nmax = 4\ndesired = 1\n\
             launch_template = {{ name = \"payment-api\", version = \"$Latest\" }}\n\
             availability_zones = [\"us-west-2a\"]\n\
             [launch_template]\nname = \"payment-api\"\nimage_id = \"ami-12c6146b\"\n\
             instance_type = \"t3.micro\"\niam_instance_profile = \"payment-api\"\n\
             [launch_template.serve]\nlayout = \"layout.toml\"\nssm_path = \"{SSM_PATH}\"\n\
             listen = \"127.0.0.1:{port}\"\ndrain_delay = \"1s\"\nbinary = \"{BIN}\"\n"
        ),
    )
    .unwrap();
    let profile = profile.to_str().unwrap();

    // The template comes first in the plan (the group launches from it).
    let (code, out, err) = moto.paytool(&["scale", "plan", "-p", profile]);
    assert_eq!(code, Some(2), "{out}{err}");
    let first = out
        .find("+ launch_template payment-api.version")
        .expect(&out);
    assert!(first < out.find("+ group").expect(&out), "{out}");
    let (code, out, err) = moto.paytool(&["scale", "apply", "-p", profile, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let latest = || -> Value {
        serde_json::from_str(&moto.boto3(
            "import base64\n\
             v = ec2.describe_launch_template_versions(LaunchTemplateName='payment-api', Versions=['$Latest'])['LaunchTemplateVersions'][0]\n\
             d = v['LaunchTemplateData']\n\
             print(json.dumps({'version': v['VersionNumber'], 'image': d['ImageId'], \
             'profile': d['IamInstanceProfile']['Name'], \
             'user_data': base64.b64decode(d['UserData']).decode()}))",
        ))
        .unwrap()
    };
    let v1 = latest();
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["image"], "ami-12c6146b");
    assert_eq!(v1["profile"], "payment-api");
    let group = &describe(&moto)[0];
    assert_eq!(group["LaunchTemplate"]["LaunchTemplateName"], "payment-api");
    assert_eq!(group["LaunchTemplate"]["Version"], "$Latest");
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", profile]);
    assert_eq!(code, Some(0), "applied, so no change: {out}");

    // Boot an "instance" from the user data EC2 gave back.
    let root = dir.path().join("instance");
    let stubs = instance_stubs(dir.path(), SSM_PATH);
    let script = dir.path().join("user-data");
    std::fs::write(&script, v1["user_data"].as_str().unwrap()).unwrap();
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let booted = run_bounded(
        Command::new("bash")
            .arg(&script)
            .env("PAYTOOL_ROOT", &root)
            .env("PATH", &path)
            .env("SSM_SHARD_URL", pg.url("paytool_s0"))
            .env("SSM_ADMIN_TOKEN", TOKEN),
        COMMAND_TIMEOUT,
    );
    let (code, out, err) = code_and_text(&booted);
    assert_eq!(code, Some(0), "the boot script: {out}{err}");
    let written = root.join("etc/paytool/layout.toml");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        layout_text,
        "the layout as written, its ${{VAR}} left for the service's environment"
    );
    let env = env_file(&root.join("etc/paytool/env"));
    assert!(
        env.contains(&("PAYTOOL_SHARD_S0_URL".into(), pg.url("paytool_s0"))),
        "{env:?}"
    );
    let systemctl = std::fs::read_to_string(root.join("systemctl.log")).unwrap();
    assert!(
        systemctl.contains("enable --now paytool.service"),
        "{systemctl}"
    );
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/paytool.service")).unwrap();
    assert!(
        unit.contains("EnvironmentFile=/etc/paytool/env\n"),
        "{unit}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");

    // The service's own command line, its paths under the instance's root, with the
    // variables from "SSM": the API it starts takes payments on the layout.
    let applied = run_bounded(
        Command::new(BIN)
            .args(["shard", "apply", "--layout", written.to_str().unwrap()])
            .envs(env.iter().cloned()),
        COMMAND_TIMEOUT,
    );
    assert!(applied.status.success(), "{:?}", code_and_text(&applied));
    let exec = exec.replace("/etc/paytool/", &format!("{}/etc/paytool/", root.display()));
    let mut words = exec.split_whitespace();
    let mut service = Command::new(words.next().unwrap());
    service
        .args(words)
        .envs(env.iter().cloned())
        .current_dir(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _service = crate::support::ChildGuard::new(service.spawn().unwrap());
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(std::time::Instant::now() < deadline, "not ready: {exec}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let merchant: Value = client
        .post(format!("{base}/v1/merchants"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "name": "booted" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paid = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(merchant["secret_key"].as_str().expect("a merchant"))
        .header("Idempotency-Key", "boot-1")
        .json(&crate::support::payment_body(500, "usd", true))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), reqwest::StatusCode::OK);
    assert_eq!(
        pg.psql_in("paytool_s0", "SELECT count(*) FROM payments")
            .unwrap()
            .trim(),
        "1",
        "the payment is in the layout's shard"
    );

    // A change to what the template says is a new version, shown field by field.
    std::fs::write(&layout, format!("{layout_text}# moved to v2\n")).unwrap();
    let (code, out, _) = moto.paytool(&["scale", "plan", "-p", profile]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("~ launch_template payment-api.version") && out.contains("1 -> 2"),
        "{out}"
    );
    assert!(
        out.contains("launch_template payment-api.user_data"),
        "{out}"
    );
    assert!(!out.contains("image_id"), "only what changed: {out}");
    let (code, out, err) = moto.paytool(&["scale", "apply", "-p", profile, "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v2 = latest();
    assert_eq!(v2["version"], 2);
    assert!(
        v2["user_data"]
            .as_str()
            .unwrap()
            .contains("# moved to v2\n")
    );

    // A password written into the layout never reaches the user data.
    std::fs::write(
        &layout,
        layout_text.replace(
            "${PAYTOOL_SHARD_S0_URL}",
            "postgres://paytool:hunter2@db/s0",
        ),
    )
    .unwrap();
    let (code, out, err) = moto.paytool(&["scale", "plan", "-p", profile]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(layout.to_str().unwrap())
            && err.contains("line 5")
            && err.contains("password"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
