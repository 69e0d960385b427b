//! `cairn mcp`: a Model Context Protocol server (the official Rust SDK, rmcp) in front of a Cairn node, so MCP
//! clients (Claude, Cursor, Letta, ...) remember and recall through it. It is a client of the node: any number of
//! agent processes share one node safely, each call runs with a capability token (stdio: the server's `--token`;
//! HTTP: the caller's own), the namespace can be pinned, and recall/get/list can return the verification of the
//! node's proof with the answer.

pub mod http;
pub mod tools;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use cairn_client::CairnClient;
use rmcp::ServiceExt;

use tools::{CairnMcp, Shared};

/// `cairn mcp` options.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// Pin the namespace: calls may only use this one or those under it (and may leave it out).
    #[arg(long = "ns")]
    pub ns: Option<String>,
    /// Serve MCP over streamable HTTP at http://ADDR/mcp instead of stdio. Each request must carry
    /// `Authorization: Bearer <token>` with the caller's own Cairn token (--token is then not used).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Host names (with or without port) HTTP requests may name in their Host header, besides localhost,
    /// 127.0.0.1 and ::1 (protection against DNS rebinding; repeatable).
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Serve HTTP on a non-loopback address even though it is plain HTTP (put TLS in front of it).
    #[arg(long)]
    pub insecure: bool,
    /// The node id (hex) answers must be signed by when verify=true. Default: the node's own, on first contact.
    #[arg(long)]
    pub node_id: Option<String>,
    /// A witness key (hex node id) whose cosignatures count in the verification (repeatable).
    #[arg(long = "witness")]
    pub witnesses: Vec<String>,
}

/// Runs the MCP server until its client leaves (stdio) or Ctrl-C / SIGTERM (HTTP).
pub async fn run(client: CairnClient, args: McpArgs) -> Result<()> {
    if let Some(ns) = &args.ns {
        cairn_index::validate::namespace(ns).context("--ns")?;
    }
    let trusted = match &args.node_id {
        Some(h) => cairn_client::verify::parse_node_id(h).context("--node-id")?,
        None => {
            let info = client
                .node_info()
                .await
                .context("cannot reach the node to learn its id")?;
            cairn_client::verify::parse_node_id(&info.node_id).context("the node's id")?
        }
    };
    let witnesses = args
        .witnesses
        .iter()
        .map(|w| cairn_client::verify::parse_node_id(w).context("--witness"))
        .collect::<Result<Vec<_>>>()?;
    let shared = Arc::new(Shared {
        client,
        pin: args.ns.clone(),
        trusted,
        witnesses,
        forward_token: args.http.is_some(),
        seen: Mutex::new(HashMap::new()),
    });
    match args.http {
        None => {
            // stdout carries the protocol only; logs go to stderr.
            let running = CairnMcp::new(shared)
                .serve(rmcp::transport::stdio())
                .await
                .context("MCP session did not start")?;
            let reason = running.waiting().await?;
            tracing::debug!(?reason, "MCP stdio session ended");
            Ok(())
        }
        Some(addr) => {
            if !addr.ip().is_loopback() && !args.insecure {
                bail!(
                    "--http {addr} is not a loopback address: bearer tokens would cross the network in clear; \
                     put TLS in front and pass --insecure, or listen on 127.0.0.1"
                );
            }
            let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(String::from)
                .collect();
            hosts.push(addr.ip().to_string());
            hosts.extend(args.allow_hosts);
            http::serve(shared, addr, hosts).await
        }
    }
}
