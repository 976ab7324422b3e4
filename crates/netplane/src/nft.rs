//! Running `nft` scripts, in this namespace or in another process's.
//!
//! The kernel's nftables are driven through the `nft` tool (Debian's `nftables`, installed
//! by `scripts/ci-setup.sh`): a script is one transaction, so a table is replaced whole or
//! not at all, and a failed apply leaves the previous rules in force.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::NetplaneError;

/// Runs `nft -f -` with `script`: in this process's network namespace (`netns_of: None`),
/// or in that of process `pid` through `nsenter`, so the node's own threads never change
/// namespace.
pub async fn run(netns_of: Option<u32>, script: &str) -> Result<(), NetplaneError> {
    let mut cmd = match netns_of {
        Some(pid) => {
            let mut c = tokio::process::Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("nft");
            c
        }
        None => tokio::process::Command::new("nft"),
    };
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetplaneError::Nft(format!("running nft (install nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetplaneError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// The names of this namespace's `ip` family tables.
pub async fn ip_tables() -> Result<Vec<String>, NetplaneError> {
    let out = tokio::process::Command::new("nft")
        .args(["list", "tables", "ip"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| NetplaneError::Nft(format!("running nft (install nftables): {e}")))?;
    if !out.status.success() {
        return Err(NetplaneError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(parse_tables(&String::from_utf8_lossy(&out.stdout)))
}

/// `table ip NAME` lines of `nft list tables ip`.
fn parse_tables(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table ip "))
        .map(|n| n.trim().to_string())
        .collect()
}

/// A script that removes table `ip name` if it exists (declaring it first makes the delete
/// succeed either way).
pub fn delete_table(name: &str) -> String {
    format!("table ip {name}\ndelete table ip {name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_from_a_listing() {
        assert_eq!(
            parse_tables("table ip nat\ntable ip filter\ntable ip swarmd_ingress_12_127_0_0_2\n"),
            vec!["nat", "filter", "swarmd_ingress_12_127_0_0_2"]
        );
        assert!(parse_tables("").is_empty());
    }
}
