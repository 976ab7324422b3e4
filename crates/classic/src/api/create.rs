//! `POST /containers/create`: classic's scheduling of one container onto the pool.
//!
//! Under the scheduling lock: the name must be free across the pool (pending creates
//! included), the scheduler ranks the engines and the container is counted as pending on
//! the first. Then, unlocked, the chosen engine creates it, pulling the image first when it
//! lacks it. A create that fails because the image cannot be found is tried again with an
//! `image==` affinity when another engine has the image, then up to `swarm.createretry`
//! more times, as classic does.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use swarmd_engine_api::ApiError;
use swarmd_engine_api::engine_path::EnginePath;
use swarmd_engine_api::query::QueryParams;
use swarmd_engine_api::version::RequestVersion;

use super::containers::engine_error;
use super::create_body::{body_for_engine, request_from_body, strip_network_nodes, user_networks};
use super::state::{ClassicState, upstream};
use crate::discovery::EngineAddr;
use crate::scheduler::extract::{
    AFFINITIES_LABEL, CONSTRAINTS_LABEL, constraints, extract, label_list,
};
use crate::scheduler::model::{Container, Node, Request as SchedRequest, SWARM_ID_LABEL};
use crate::view::resolve::check_name_available;

/// Largest create body accepted (the daemon has no limit; this only stops abuse).
const MAX_BODY: usize = 4 << 20;

pub async fn create(
    st: &ClassicState,
    req: Request,
    version: &RequestVersion,
) -> Result<Response, ApiError> {
    let query = QueryParams::parse(req.uri().query().unwrap_or_default());
    let name = query.get("name").unwrap_or_default().to_owned();
    let auth = req.headers().get("x-registry-auth").cloned();
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let mut body: Value = if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let mut sreq = request_from_body(&body);
    if sreq.labels.get(SWARM_ID_LABEL).is_none_or(String::is_empty) {
        sreq.labels.insert(SWARM_ID_LABEL.to_owned(), random_id());
    }
    extract(&mut sreq);
    let engine_names: Vec<String> = st.pool.engines().into_iter().map(|e| e.node.name).collect();
    if let Some(soft) = strip_network_nodes(&mut body, &engine_names)
        && !constraints(&sreq).iter().any(|c| c.starts_with("node"))
    {
        let mut list = label_list(&sreq.labels, CONSTRAINTS_LABEL);
        list.push(soft);
        sreq.labels.insert(
            CONSTRAINTS_LABEL.to_owned(),
            serde_json::to_string(&list).unwrap_or_default(),
        );
    }

    let ctx = Create {
        st,
        name: &name,
        body: &body,
        query: query.0.clone(),
        auth,
        version,
    };
    let mut result = ctx.attempt(&sreq, false).await;
    if let Err(e) = &result {
        let mut retries = 0;
        let node_pinned = constraints(&sreq).iter().any(|c| c.starts_with("node=="));
        if image_not_found(&e.message) && !node_pinned && ctx.image_in_pool(&sreq.image) {
            result = ctx.attempt(&sreq, true).await;
            retries += 1;
        }
        while result.is_err() && retries < st.options.cluster.create_retry {
            if let Err(e) = &result {
                tracing::warn!(error = %e.message, "Failed to create container, retrying");
            }
            result = ctx.attempt(&sreq, false).await;
            retries += 1;
        }
    }
    let (status, answer) = result?;
    let mut resp = Response::new(Body::from(answer));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

struct Create<'a> {
    st: &'a ClassicState,
    name: &'a str,
    body: &'a Value,
    query: Vec<(String, String)>,
    auth: Option<HeaderValue>,
    version: &'a RequestVersion,
}

impl Create<'_> {
    /// One scheduling and create; on success the engine's 201 answer.
    async fn attempt(
        &self,
        sreq: &SchedRequest,
        image_affinity: bool,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        // The scheduler sees the `image==` affinity of this attempt; the engine does not.
        let mut sched = sreq.clone();
        if image_affinity {
            let mut list = label_list(&sched.labels, AFFINITIES_LABEL);
            list.push(format!("image=={}", sched.image));
            sched.labels.insert(
                AFFINITIES_LABEL.to_owned(),
                serde_json::to_string(&list).unwrap_or_default(),
            );
        }
        let (addr, ncpu, token) = {
            let _lock = self.st.schedule_lock.lock().await;
            let (addrs, nodes): (Vec<EngineAddr>, Vec<Node>) =
                self.st.pool.nodes().into_iter().unzip();
            let refs: Vec<&Node> = nodes.iter().collect();
            check_name_available(&refs, self.name)
                .map_err(|e| ApiError::conflict(e.to_string()))?;
            let ranked = self
                .st
                .scheduler
                .select(&nodes, &sched, &mut rand::rng())
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let chosen = ranked[0];
            let Some(i) = nodes.iter().position(|n| n.addr == chosen.addr) else {
                return Err(ApiError::internal("error creating container"));
            };
            let addr = &addrs[i];
            let pending = Container {
                names: if self.name.is_empty() {
                    Vec::new()
                } else {
                    vec![format!("/{}", self.name)]
                },
                image: sreq.image.clone(),
                labels: sreq.labels.clone(),
                cpu_shares: sreq.cpu_shares,
                memory: sreq.memory,
                port_bindings: sreq.port_bindings.clone(),
                exposed_ports: sreq.exposed_ports.clone(),
                network_mode: sreq.network_mode.clone(),
                state: "created".into(),
                ..Default::default()
            };
            let token = self.st.pool.add_pending(addr, pending);
            (addr.clone(), chosen.cpus, token)
        };
        let body = body_for_engine(self.body, sreq, ncpu);
        match self.create_on(&addr, &body, &sreq.image).await {
            Ok((status, bytes)) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                    && let Some(id) = v.get("Id").and_then(Value::as_str)
                {
                    self.st.pool.pending_created(&token, id);
                    self.st.pool.refresh_container(&addr, id);
                }
                tracing::debug!(engine = %addr, name = self.name, "container scheduled");
                Ok((status, bytes))
            }
            Err(e) => {
                tracing::error!(engine = %addr, error = %e.message, "Failed to create container");
                self.st.pool.end_pending(token);
                Err(e)
            }
        }
    }

    /// Create on `addr`; a missing image is pulled there and the create tried once more.
    async fn create_on(
        &self,
        addr: &EngineAddr,
        body: &Value,
        image: &str,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let mut path = EnginePath::new(["containers", "create"]);
        for (k, v) in &self.query {
            path = path.query(k, v);
        }
        let path = path.build();
        self.ensure_networks(addr, body).await?;
        let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let (status, answer) = self
            .st
            .call(addr, Method::POST, &path, bytes.clone(), self.version)
            .await?;
        if status == StatusCode::NOT_FOUND && !image.is_empty() {
            self.pull(addr, image).await?;
            let (status, answer) = self
                .st
                .call(addr, Method::POST, &path, bytes, self.version)
                .await?;
            return ok_or_error(status, answer);
        }
        ok_or_error(status, answer)
    }

    /// `POST /images/create?fromImage=IMAGE` on one engine, the client's registry
    /// credentials passed on; the progress is read to its end for an error.
    async fn pull(&self, addr: &EngineAddr, image: &str) -> Result<(), ApiError> {
        let path = EnginePath::new(["images", "create"])
            .query("fromImage", image)
            .build();
        let mut builder = axum::http::Request::builder()
            .method(Method::POST)
            .uri(path);
        if let Some(auth) = &self.auth {
            builder = builder.header("x-registry-auth", auth.clone());
        }
        let req = builder
            .body(Body::empty())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = self
            .st
            .proxy
            .forward(&upstream(addr), req, self.version)
            .await;
        let status = resp.status();
        let mut stream = resp.into_body().into_data_stream();
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
            all.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(engine_error(status, &all));
        }
        for line in all.split(|b| *b == b'\n') {
            if let Ok(v) = serde_json::from_slice::<Value>(line)
                && let Some(msg) = v.get("error").and_then(Value::as_str)
            {
                return Err(ApiError::not_found(msg.to_owned()));
            }
        }
        Ok(())
    }

    /// Makes the container's networks exist on `addr`: a network of the pool (one
    /// created through the manager without a node prefix, such as docker-compose's project
    /// network) that the chosen engine lacks is created there like the one another engine
    /// has (driver, options, labels, internal, IPv6; the engine picks the subnet).
    async fn ensure_networks(&self, addr: &EngineAddr, body: &Value) -> Result<(), ApiError> {
        for name in user_networks(body) {
            let path = EnginePath::new(["networks", name.as_str()]).build();
            let (status, _) = self
                .st
                .call(addr, Method::GET, &path, Bytes::new(), self.version)
                .await?;
            if status == StatusCode::OK {
                continue;
            }
            let mut model = None;
            for other in self.st.healthy_engines() {
                if other.addr == *addr {
                    continue;
                }
                if let Ok((StatusCode::OK, found)) = self
                    .st
                    .call(&other.addr, Method::GET, &path, Bytes::new(), self.version)
                    .await
                    && let Ok(v) = serde_json::from_slice::<Value>(&found)
                    && v.get("Scope").and_then(Value::as_str) == Some("local")
                {
                    model = Some(v);
                    break;
                }
            }
            // Unknown everywhere: the engine's own "network not found" answers the create.
            let Some(model) = model else { continue };
            let create = serde_json::json!({
                "Name": name,
                "CheckDuplicate": true,
                "Driver": model.get("Driver").cloned().unwrap_or(Value::Null),
                "Options": model.get("Options").cloned().unwrap_or(Value::Null),
                "Labels": model.get("Labels").cloned().unwrap_or(Value::Null),
                "Internal": model.get("Internal").cloned().unwrap_or(Value::Bool(false)),
                "EnableIPv6": model.get("EnableIPv6").cloned().unwrap_or(Value::Bool(false)),
                "Attachable": model.get("Attachable").cloned().unwrap_or(Value::Bool(false)),
            });
            let (status, answer) = self
                .st
                .call(
                    addr,
                    Method::POST,
                    "/networks/create",
                    Bytes::from(create.to_string()),
                    self.version,
                )
                .await?;
            if !status.is_success() && status != StatusCode::CONFLICT {
                return Err(engine_error(status, &answer));
            }
            tracing::info!(engine = %addr, network = %name, "network made on the chosen engine");
        }
        Ok(())
    }

    /// Whether any engine has the image (classic's `c.Image(name) != nil`).
    fn image_in_pool(&self, image: &str) -> bool {
        self.st.pool.nodes().iter().any(|(_, n)| {
            n.images.iter().any(|i| {
                i.id == image
                    || i.repo_tags
                        .iter()
                        .any(|t| t == image || t.strip_suffix(":latest") == Some(image))
            })
        })
    }
}

fn ok_or_error(status: StatusCode, answer: Bytes) -> Result<(StatusCode, Bytes), ApiError> {
    if status.is_success() {
        Ok((status, answer))
    } else {
        Err(engine_error(status, &answer))
    }
}

/// Classic's tests for "the image is not there" across engine versions.
fn image_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no such image")
        || m.contains("repository does not exist")
        || (m.contains("image ") && m.contains(" not found"))
        || (m.contains("repository ") && m.contains(" not found"))
        || m.contains("pull access denied")
}

/// A Swarm ID: 64 random hex digits, like a container ID.
fn random_id() -> String {
    swarmd_types::ids::new_hex_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_not_found_covers_engine_wordings() {
        assert!(image_not_found("No such image: busybox:latest"));
        assert!(image_not_found(
            "pull access denied for nope, repository does not exist or may require 'docker login'"
        ));
        assert!(!image_not_found("Conflict. The container name is in use"));
    }

    #[test]
    fn swarm_ids_are_64_hex() {
        let a = random_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
    }
}
