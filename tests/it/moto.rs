//! A real moto server (the AWS emulator) on a free loopback port, one per test, and
//! boto3 to look at what paytool made, independently of paytool's own code.

use crate::support::{BIN, COMMAND_TIMEOUT, ChildGuard, free_port, run_bounded, stdout_of};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    /// Killed and reaped when the `Moto` is dropped.
    _server: ChildGuard,
    pub endpoint: String,
}

const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server: install it with `pip install 'moto[server]'` (scripts/test.sh does)");
        // Owned from here on: a moto that does not start in time is killed too.
        let server = ChildGuard::new(child);
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            _server: server,
            endpoint,
        }
    }

    /// Run a boto3 snippet against this moto; `c` is an autoscaling client, `ec2` an EC2
    /// client. Returns what it prints.
    pub fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json\n\
             c = boto3.client('autoscaling', endpoint_url='{e}', region_name='us-west-2', aws_access_key_id='test', aws_secret_access_key='test')\n\
             ec2 = boto3.client('ec2', endpoint_url='{e}', region_name='us-west-2', aws_access_key_id='test', aws_secret_access_key='test')\n\
             {code}\n",
            e = self.endpoint
        );
        stdout_of("boto3", Command::new("python3").args(["-c", &script]))
    }

    /// `paytool scale ...` against this moto with dummy credentials, at most
    /// `COMMAND_TIMEOUT` (the longest, an apply with `--wait --timeout 30s`, fits in it).
    pub fn paytool(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = run_bounded(
            Command::new(BIN)
                .args(args)
                .env("AWS_ENDPOINT_URL", &self.endpoint)
                .env("AWS_REGION", "us-west-2")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env_remove("AWS_PROFILE"),
            COMMAND_TIMEOUT,
        );
        code_and_text(&out)
    }
}

/// A finished command's exit code, stdout and stderr as text.
pub fn code_and_text(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
