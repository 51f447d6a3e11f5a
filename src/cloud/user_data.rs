//! The user data of a launch template paytool makes: a boot script that writes the
//! layout, reads the service's settings from SSM Parameter Store, and starts `paytool
//! serve --layout` under systemd, drained on stop. Pure: the same profile renders the same
//! bytes, so a plan compares them and a change makes a new template version.
//!
//! Secrets never travel in it (anyone allowed to describe the instance can read user
//! data): the layout keeps its `${VAR}`s, and the variables come from SSM at boot.

use crate::profile::scale::ServeSection;

/// AWS refuses user data over 16 KB (before base64).
pub const USER_DATA_MAX: usize = 16 * 1024;
pub const LISTEN_DEFAULT: &str = "0.0.0.0:8080";
pub const DRAIN_DELAY_DEFAULT: &str = "10s";
pub const BINARY_DEFAULT: &str = "/usr/local/bin/paytool";
/// Ends the layout's here-document; a layout with this line cannot be carried.
const LAYOUT_END: &str = "PAYTOOL_LAYOUT_END";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UserDataError {
    #[error("the layout has a line {LAYOUT_END:?}, which would end it early in the boot script")]
    LayoutHasTerminator,
    #[error("the user data would be {0} bytes; AWS takes at most {USER_DATA_MAX}")]
    TooLarge(usize),
}

/// The boot script for `serve`. Every path it writes is under `$PAYTOOL_ROOT` (unset on
/// an instance; a scratch directory when a test runs the script).
pub fn render(serve: &ServeSection) -> Result<String, UserDataError> {
    if serve.layout_text.lines().any(|l| l == LAYOUT_END) {
        return Err(UserDataError::LayoutHasTerminator);
    }
    let listen = serve.listen.as_deref().unwrap_or(LISTEN_DEFAULT);
    let drain = serve.drain_delay.as_deref().unwrap_or(DRAIN_DELAY_DEFAULT);
    let binary = serve.binary.as_deref().unwrap_or(BINARY_DEFAULT);
    let layout = serve.layout_text.trim_end_matches('\n');
    let ssm_path = &serve.ssm_path;
    let script = format!(
        r#"#!/bin/bash
# Written by `paytool scale apply` (src/cloud/user_data.rs): run the payment API,
# `paytool serve --layout`, on this instance. A change makes a new template version.
set -euo pipefail
root="${{PAYTOOL_ROOT:-}}"
install -d -m 0755 "$root/etc/paytool"
cat > "$root/etc/paytool/layout.toml" <<'{LAYOUT_END}'
{layout}
{LAYOUT_END}
# The service's variables (shard URLs, the admin token) from SSM Parameter Store: one
# per parameter under {ssm_path}, named after its last part, its value on one line (a
# systemd EnvironmentFile). Readable by the service only.
umask 077
aws ssm get-parameters-by-path --path '{ssm_path}' --recursive --with-decryption \
  --query 'Parameters[].[Name,Value]' --output text |
  while IFS=$'\t' read -r name value; do printf '%s=%s\n' "${{name##*/}}" "$value"; done \
  > "$root/etc/paytool/env"
umask 022
id paytool > /dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin paytool
chown root:paytool "$root/etc/paytool/env"
chmod 0640 "$root/etc/paytool/env"
install -d -m 0755 "$root/etc/systemd/system"
cat > "$root/etc/systemd/system/paytool.service" <<'PAYTOOL_UNIT_END'
[Unit]
Description=paytool serve: the payment API
Wants=network-online.target
After=network-online.target

[Service]
User=paytool
EnvironmentFile=/etc/paytool/env
ExecStart={binary} serve --listen {listen} --layout /etc/paytool/layout.toml --drain-delay {drain}
# SIGTERM drains: /readyz turns 503 for --drain-delay, in-flight requests finish.
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=always
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
PAYTOOL_UNIT_END
systemctl daemon-reload
systemctl enable --now paytool.service
"#
    );
    if script.len() > USER_DATA_MAX {
        return Err(UserDataError::TooLarge(script.len()));
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(layout: &str) -> ServeSection {
        ServeSection {
            layout: "two.toml".into(),
            listen: None,
            ssm_path: "/paytool/prod/".into(),
            drain_delay: None,
            binary: None,
            layout_text: layout.into(),
        }
    }

    #[test]
    fn the_layout_travels_as_written_and_the_service_runs_serve_on_it() {
        let layout = "[shards.s0]\nurl = \"${PAYTOOL_SHARD_S0_URL}\"\n";
        let script = render(&serve(layout)).unwrap();
        assert!(script.contains(&format!("<<'{LAYOUT_END}'\n{layout}{LAYOUT_END}\n")));
        assert!(script.contains(
            "ExecStart=/usr/local/bin/paytool serve --listen 0.0.0.0:8080 \
             --layout /etc/paytool/layout.toml --drain-delay 10s\n"
        ));
        assert!(script.contains("--path '/paytool/prod/'"));
        assert_eq!(render(&serve(layout)).unwrap(), script, "deterministic");
    }

    #[test]
    fn a_layout_that_would_end_its_here_document_or_overflow_is_refused() {
        let bad = format!("a = 1\n{LAYOUT_END}\nrm -rf /\n");
        assert_eq!(
            render(&serve(&bad)),
            Err(UserDataError::LayoutHasTerminator)
        );
        let big = "# padding\n".repeat(USER_DATA_MAX / 10);
        assert!(matches!(
            render(&serve(&big)),
            Err(UserDataError::TooLarge(_))
        ));
    }
}
