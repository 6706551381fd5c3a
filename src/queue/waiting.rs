//! Messages waiting for closed next-hop hosts (`outbound::breaker`): in the order they began
//! waiting, per host. They are not in the schedule while they wait: at a host's probe time
//! one of them (the first) goes as the probe, and when the host opens again all of them go.

use crate::spool::QueueId;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Default)]
pub(super) struct Waiting {
    by_host: HashMap<String, VecDeque<QueueId>>,
    /// The hosts each waiting message waits for (any of them opening releases it).
    hosts_of: HashMap<QueueId, Vec<String>>,
    /// The message sent to carry each host's probe, until its attempt ends.
    carriers: HashMap<String, QueueId>,
}

impl Waiting {
    /// `id` waits for `hosts` (from now on, behind those already waiting).
    pub fn hold(&mut self, id: &QueueId, hosts: Vec<String>) {
        self.forget(id);
        for h in &hosts {
            self.by_host
                .entry(h.clone())
                .or_default()
                .push_back(id.clone());
        }
        self.hosts_of.insert(id.clone(), hosts);
    }

    /// `id` no longer waits (it goes now, or is gone).
    pub fn forget(&mut self, id: &QueueId) {
        let Some(hosts) = self.hosts_of.remove(id) else {
            return;
        };
        for h in hosts {
            if let Some(list) = self.by_host.get_mut(&h) {
                list.retain(|x| x != id);
                if list.is_empty() {
                    self.by_host.remove(&h);
                }
            }
        }
    }

    /// Every message waiting for `host`, which opened again.
    /// One pass over each other host's list, not one per message: thousands can wait.
    pub fn release(&mut self, host: &str) -> Vec<QueueId> {
        let Some(ids) = self.by_host.remove(host) else {
            return Vec::new();
        };
        let mut elsewhere: HashMap<String, HashSet<&QueueId>> = HashMap::new();
        for id in &ids {
            for h in self.hosts_of.remove(id).unwrap_or_default() {
                if h != host {
                    elsewhere.entry(h).or_default().insert(id);
                }
            }
        }
        for (h, gone) in elsewhere {
            if let Some(list) = self.by_host.get_mut(&h) {
                list.retain(|x| !gone.contains(x));
                if list.is_empty() {
                    self.by_host.remove(&h);
                }
            }
        }
        ids.into()
    }

    /// The first message waiting for `host`, to carry its probe.
    pub fn carrier(&mut self, host: &str) -> Option<QueueId> {
        if self.carriers.contains_key(host) {
            return None;
        }
        let id = self.by_host.get(host)?.front()?.clone();
        self.forget(&id);
        self.carriers.insert(host.to_string(), id.clone());
        Some(id)
    }

    /// The attempt of `id` ended: if it carried a probe, the host may get another carrier.
    /// Returns the hosts it was the carrier for.
    pub fn attempt_ended(&mut self, id: &QueueId) -> Vec<String> {
        let carried: Vec<String> = self
            .carriers
            .iter()
            .filter(|(_, c)| *c == id)
            .map(|(h, _)| h.clone())
            .collect();
        for h in &carried {
            self.carriers.remove(h);
        }
        carried
    }

    /// Hosts that messages wait for, without a probe carrier on its way.
    pub fn hosts(&self) -> Vec<String> {
        self.by_host
            .keys()
            .filter(|h| !self.carriers.contains_key(*h))
            .cloned()
            .collect()
    }

    /// How many messages wait for `host`.
    pub fn count(&self, host: &str) -> usize {
        self.by_host.get(host).map_or(0, VecDeque::len)
    }

    pub fn clear(&mut self) {
        *self = Waiting::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_carrier_per_host_then_everyone_at_once() {
        let mut w = Waiting::default();
        let (a, b, c) = (QueueId::new(), QueueId::new(), QueueId::new());
        w.hold(&a, vec!["h1:25".into()]);
        w.hold(&b, vec!["h1:25".into(), "h2:25".into()]);
        w.hold(&c, vec!["h2:25".into()]);
        assert_eq!(w.count("h1:25"), 2);
        assert_eq!(w.carrier("h1:25"), Some(a.clone()));
        assert_eq!(w.carrier("h1:25"), None, "one probe at a time");
        assert_eq!(w.hosts(), vec!["h2:25".to_string()]);
        w.attempt_ended(&a);
        let mut released = w.release("h2:25");
        released.sort();
        let mut want = vec![b.clone(), c.clone()];
        want.sort();
        assert_eq!(released, want);
        assert!(w.hosts_of.is_empty());
        assert_eq!(w.count("h1:25"), 0, "b went with h2");
    }

    #[test]
    fn a_release_leaves_the_others_waiting_elsewhere_in_order() {
        let mut w = Waiting::default();
        let ids: Vec<QueueId> = (0..6).map(|_| QueueId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            // Even ones wait for both hosts, odd ones for h2 only.
            let hosts = if i % 2 == 0 {
                vec!["h1:25", "h2:25"]
            } else {
                vec!["h2:25"]
            };
            w.hold(id, hosts.into_iter().map(String::from).collect());
        }
        let released = w.release("h1:25");
        assert_eq!(
            released,
            vec![ids[0].clone(), ids[2].clone(), ids[4].clone()]
        );
        assert_eq!(w.count("h1:25"), 0);
        assert_eq!(w.count("h2:25"), 3);
        assert_eq!(
            w.carrier("h2:25"),
            Some(ids[1].clone()),
            "the first of those left"
        );
        assert_eq!(w.release("h2:25"), vec![ids[3].clone(), ids[5].clone()]);
        assert!(w.hosts_of.is_empty() && w.by_host.is_empty());
        assert!(w.release("h3:25").is_empty());
    }
}
