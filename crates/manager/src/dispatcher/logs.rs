//! The log broker: `service logs` on a manager asks the agents of the nodes that ran the
//! tasks for their output (a subscription sent down each agent's session) and merges what
//! they publish back. As swarmkit's, it keeps nothing: lines flow from agent to caller.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use futures::StreamExt;
use swarmd_types::dispatcher::{
    DispatchError, DispatchStream, LogSubscription, PublishLogs, PublishedLine,
};
use swarmd_types::ids;
use tokio::sync::mpsc;

/// Subscriptions in flight and the agents that can serve them.
#[derive(Default)]
pub struct LogBroker {
    agents: Mutex<HashMap<String, mpsc::Sender<LogSubscription>>>,
    subscriptions: Mutex<HashMap<String, mpsc::Sender<PublishLogs>>>,
}

impl LogBroker {
    /// An agent listening for subscriptions; replaces an earlier listener of that node.
    pub fn register_agent(&self, node_id: &str) -> mpsc::Receiver<LogSubscription> {
        let (tx, rx) = mpsc::channel(64);
        self.agents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node_id.to_string(), tx);
        rx
    }

    /// Lines from an agent. An error tells it the subscriber has gone.
    pub async fn publish(&self, logs: PublishLogs) -> Result<(), DispatchError> {
        let tx = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&logs.subscription_id)
            .cloned();
        let gone = || DispatchError::Unavailable("log subscription closed".into());
        let tx = tx.ok_or_else(gone)?;
        let id = logs.subscription_id.clone();
        if tx.send(logs).await.is_err() {
            self.subscriptions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(gone());
        }
        Ok(())
    }

    /// Asks each node for the output of its tasks. The stream ends once every reached node
    /// has sent everything (or, with `follow`, when the caller drops it).
    pub fn subscribe(
        &self,
        tasks_by_node: BTreeMap<String, Vec<String>>,
        template: LogSubscription,
    ) -> DispatchStream<PublishedLine> {
        let id = ids::new_id();
        let (tx, rx) = mpsc::channel::<PublishLogs>(256);
        self.subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        let mut reached = 0usize;
        {
            let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
            for (node, task_ids) in tasks_by_node {
                let Some(agent) = agents.get(&node) else {
                    tracing::debug!(node = %node, "no agent listening for logs");
                    continue;
                };
                let sub = LogSubscription {
                    id: id.clone(),
                    task_ids,
                    ..template.clone()
                };
                if agent.try_send(sub).is_ok() {
                    reached += 1;
                }
            }
        }
        if reached == 0 {
            self.subscriptions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return if template.follow {
                Box::pin(futures::stream::pending())
            } else {
                Box::pin(futures::stream::empty())
            };
        }
        let follow = template.follow;
        let stream = futures::stream::unfold((rx, reached), move |(mut rx, mut open)| async move {
            loop {
                if open == 0 && !follow {
                    return None;
                }
                let batch = rx.recv().await?;
                if batch.close {
                    open = open.saturating_sub(1);
                }
                if !batch.lines.is_empty() || open == 0 {
                    return Some((batch.lines, (rx, open)));
                }
            }
        })
        .flat_map(|lines| futures::stream::iter(lines.into_iter().map(Ok)));
        Box::pin(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(task: &str, text: &str) -> PublishedLine {
        PublishedLine {
            task_id: task.into(),
            stderr: false,
            timestamp: "2026-01-01T00:00:00Z".into(),
            data: text.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn lines_flow_from_agents_until_every_node_closed() {
        let broker = std::sync::Arc::new(LogBroker::default());
        let mut a = broker.register_agent("n1");
        let mut b = broker.register_agent("n2");
        let stream = broker.subscribe(
            BTreeMap::from([
                ("n1".to_string(), vec!["t1".to_string()]),
                ("n2".to_string(), vec!["t2".to_string()]),
                ("n3".to_string(), vec!["t3".to_string()]),
            ]),
            LogSubscription {
                id: String::new(),
                task_ids: vec![],
                follow: false,
                tail: None,
                since: None,
                stdout: true,
                stderr: true,
            },
        );
        let sa = a.recv().await.unwrap();
        let sb = b.recv().await.unwrap();
        assert_eq!(sa.task_ids, vec!["t1"]);
        assert_eq!(sa.id, sb.id);
        let br = broker.clone();
        let publisher = tokio::spawn(async move {
            br.publish(PublishLogs {
                subscription_id: sa.id.clone(),
                lines: vec![line("t1", "one\n")],
                close: true,
            })
            .await
            .unwrap();
            br.publish(PublishLogs {
                subscription_id: sb.id.clone(),
                lines: vec![line("t2", "two\n")],
                close: true,
            })
            .await
            .unwrap();
        });
        let got: Vec<String> = stream
            .map(|l| String::from_utf8(l.unwrap().data).unwrap())
            .collect()
            .await;
        publisher.await.unwrap();
        assert_eq!(got, vec!["one\n", "two\n"]);
    }

    #[tokio::test]
    async fn publishing_to_a_dropped_subscription_fails() {
        let broker = LogBroker::default();
        let mut a = broker.register_agent("n1");
        let stream = broker.subscribe(
            BTreeMap::from([("n1".to_string(), vec!["t1".to_string()])]),
            LogSubscription {
                id: String::new(),
                task_ids: vec![],
                follow: true,
                tail: None,
                since: None,
                stdout: true,
                stderr: true,
            },
        );
        let sub = a.recv().await.unwrap();
        drop(stream);
        let err = broker
            .publish(PublishLogs {
                subscription_id: sub.id,
                lines: vec![line("t1", "x\n")],
                close: false,
            })
            .await;
        assert!(err.is_err());
    }
}
