//! A loaded project as the commands use it: the typed model, its canonical tree (for hashes and
//! `config`), where it came from, and the names Compose derives (containers, networks, volumes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::model::{FileRef, Service, ServiceNetwork};

pub struct Project {
    pub name: String,
    pub model: crate::model::Project,
    /// The canonical, normalized tree the model was read from.
    pub tree: Value,
    pub working_dir: PathBuf,
    pub config_files: Vec<PathBuf>,
    /// `--env-file` files given explicitly (recorded in a label).
    pub env_files: Vec<PathBuf>,
    /// Services left out by profiles.
    pub disabled: Vec<String>,
    /// The environment `${}` read (shell, then env files): `run -e KEY` and `--build-arg KEY`
    /// take bare keys' values from it.
    pub env: std::collections::HashMap<String, String>,
}

/// Where a secret (`/run/secrets/<source>`) or config (`/<source>`) lands in the container.
pub fn file_target(r: &FileRef, secret: bool) -> String {
    match &r.target {
        Some(t) if t.starts_with('/') => t.clone(),
        Some(t) if secret => format!("/run/secrets/{t}"),
        Some(t) => format!("/{t}"),
        None if secret => format!("/run/secrets/{}", r.source),
        None => format!("/{}", r.source),
    }
}

/// Whether a file-backed secret or config is copied in rather than bind-mounted: a mode,
/// uid or gid can only be given to a copy.
pub fn copied(r: &FileRef) -> bool {
    r.mode.is_some() || r.uid.is_some() || r.gid.is_some()
}

impl Project {
    /// A project known only by name (commands such as `down -p NAME` without a file).
    pub fn named(name: String) -> Project {
        Project {
            name,
            model: crate::model::Project::default(),
            tree: Value::Null,
            working_dir: PathBuf::new(),
            config_files: Vec::new(),
            env_files: Vec::new(),
            disabled: Vec::new(),
            env: std::collections::HashMap::new(),
        }
    }

    pub fn config_files_label(&self) -> String {
        let v: Vec<String> = self
            .config_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        v.join(",")
    }

    pub fn env_files_label(&self) -> String {
        let v: Vec<String> = self
            .env_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        v.join(",")
    }

    /// Whether `service` is one of the file's services (always, for a project known only by
    /// name).
    pub fn knows(&self, service: &str) -> bool {
        self.tree.is_null()
            || self.model.services.contains_key(service)
            || self.disabled.iter().any(|d| d == service)
    }

    /// The engine's name of a network key (`<project>_<key>`, or its `name`).
    pub fn network_name(&self, key: &str) -> String {
        self.model
            .networks
            .get(key)
            .and_then(|n| n.name.clone())
            .unwrap_or_else(|| format!("{}_{key}", self.name))
    }

    /// The service's networks as engine names, highest priority first (then by name): the
    /// first is the one the container is created on.
    pub fn service_networks(&self, svc: &Service) -> Vec<(String, Option<ServiceNetwork>)> {
        let mut v: Vec<(i64, String, Option<ServiceNetwork>)> = match &svc.networks {
            Some(m) => m
                .iter()
                .map(|(k, c)| {
                    let prio = c.as_ref().and_then(|c| c.priority).unwrap_or(0);
                    (prio, self.network_name(k), c.clone())
                })
                .collect(),
            None if svc.network_mode.is_none() => {
                vec![(0, self.network_name("default"), None)]
            }
            None => Vec::new(),
        };
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        v.into_iter().map(|(_, n, c)| (n, c)).collect()
    }

    /// How many replicas the file asks for (`scale`, else `deploy.replicas`, else 1).
    pub fn replicas(&self, svc: &Service) -> u64 {
        svc.scale
            .or_else(|| svc.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// The image a service runs: `image`, or `<project>-<service>` for a build without one.
    pub fn image_name(&self, service: &str, svc: &Service) -> String {
        svc.image
            .clone()
            .unwrap_or_else(|| format!("{}-{service}", self.name))
    }

    /// A replica's container name.
    pub fn container_name(&self, service: &str, svc: &Service, number: u64) -> String {
        svc.container_name
            .clone()
            .unwrap_or_else(|| format!("{}-{service}-{number}", self.name))
    }

    /// The service's canonical tree (what its config hash covers).
    pub fn service_tree(&self, service: &str) -> &Value {
        &self.tree["services"][service]
    }

    /// Services in dependency order (dependencies first), restricted to `names` and, unless
    /// `no_deps`, what they depend on.
    pub fn selection(&self, names: &[String], no_deps: bool) -> Result<Vec<String>, String> {
        for n in names {
            if !self.model.services.contains_key(n) {
                return Err(if self.disabled.contains(n) {
                    format!("no such service: {n}: disabled")
                } else {
                    format!("no such service: {n}")
                });
            }
        }
        let mut want: BTreeMap<String, ()> = BTreeMap::new();
        let mut stack: Vec<String> = if names.is_empty() {
            self.model.services.keys().cloned().collect()
        } else {
            names.to_vec()
        };
        while let Some(s) = stack.pop() {
            if want.insert(s.clone(), ()).is_some() {
                continue;
            }
            if no_deps && !names.is_empty() {
                continue;
            }
            if let Some(svc) = self.model.services.get(&s) {
                stack.extend(
                    svc.depends_on
                        .iter()
                        .filter(|(d, dep)| dep.required || self.model.services.contains_key(*d))
                        .map(|(d, _)| d.clone()),
                );
            }
        }
        Ok(self
            .order()
            .into_iter()
            .filter(|s| want.contains_key(s))
            .collect())
    }

    /// Every service, dependencies before dependents (the loader refused cycles).
    pub fn order(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen = BTreeMap::new();
        fn visit(p: &Project, s: &str, seen: &mut BTreeMap<String, ()>, out: &mut Vec<String>) {
            if seen.insert(s.to_string(), ()).is_some() {
                return;
            }
            if let Some(svc) = p.model.services.get(s) {
                for d in svc.depends_on.keys() {
                    visit(p, d, seen, out);
                }
                out.push(s.to_string());
            }
        }
        for s in self.model.services.keys() {
            visit(self, s, &mut seen, &mut out);
        }
        out
    }
}
