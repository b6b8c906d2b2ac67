//! Running the planned stages: independent stages in parallel once the stages they use are
//! built, each stage's FROM (an earlier stage, an image pulled when missing, scratch) and
//! ONBUILD triggers, then its steps; the target's image is tagged at the end. It must not
//! parse the request or the Dockerfile (see `plan`) nor commit layers itself (see `commit`).

use super::files::View;
use super::options::{check_platform, PROXY_ARGS};
use super::plan::StagePlan;
use super::{bad, bad_msg, lock, short, BResult, Builder, Failure, Stage, Work};
use crate::error::Error;
use berth_api::progress::Message;
use berth_build::cache::Inputs;
use berth_build::Instruction;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Builder {
    /// Builds the needed stages, each as soon as the stages it uses are built (independent
    /// stages in parallel), then tags the target's image.
    pub(super) async fn run(
        self: &Arc<Self>,
        stages: Arc<Vec<StagePlan>>,
        needed: BTreeMap<usize, BTreeSet<usize>>,
        target: usize,
    ) -> BResult<()> {
        // Steps are numbered in file order over the needed stages.
        let mut first = HashMap::new();
        let mut n = 0;
        for (i, s) in stages.iter().enumerate() {
            if needed.contains_key(&i) {
                first.insert(i, n + 1);
                n += s.nodes.len() + 1;
            }
        }
        let mut done = BTreeSet::new();
        let mut started = BTreeSet::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut failure: Option<Failure> = None;
        loop {
            if failure.is_none() {
                for (i, deps) in &needed {
                    if started.contains(i) || !deps.iter().all(|d| done.contains(d)) {
                        continue;
                    }
                    started.insert(*i);
                    let (b, stages, i) = (self.clone(), stages.clone(), *i);
                    let step = first.get(&i).copied().unwrap_or(1);
                    tasks.spawn(async move {
                        let r = b.build_stage(&stages, i, step, i == target).await;
                        (i, r)
                    });
                }
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((i, Ok(image))) => {
                    lock(&self.stage_images).insert(i, image);
                    done.insert(i);
                }
                Ok((_, Err(e))) => {
                    self.cancelled.store(true, Ordering::SeqCst);
                    failure.get_or_insert(e);
                }
                Err(e) => {
                    self.cancelled.store(true, Ordering::SeqCst);
                    failure.get_or_insert(Error::internal(e.to_string()).into());
                }
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }
        let last = lock(&self.stage_images)
            .get(&target)
            .cloned()
            .ok_or_else(|| Error::internal("the target stage was not built"))?;
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !lock(&self.used).contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.say(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            ));
        }
        self.send(Message {
            aux: Some(json!({ "ID": last })),
            ..Message::default()
        });
        if self.opts.quiet {
            self.send(Message::stream(format!("{last}\n")));
        }
        self.say(format!("Successfully built {}\n", short(&last)));
        for t in &self.opts.tags {
            self.d.images.tag(&last, t)?;
            let name = berth_image::reference::Reference::parse(t)
                .map(|r| r.with_default_tag().familiar())
                .unwrap_or_else(|_| t.clone());
            self.d
                .events
                .image_event(&self.d.images, &last, &name, "tag");
            self.say(format!("Successfully tagged {name}\n"));
        }
        Ok(())
    }

    /// One stage, its steps numbered from `first`; the image it ends with.
    pub(super) async fn build_stage(
        &self,
        stages: &[StagePlan],
        i: usize,
        first: usize,
        is_target: bool,
    ) -> BResult<String> {
        let s = &stages[i];
        let mut st = self.from(i, s, stages, first).await?;
        for n in &s.nodes {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(bad_msg("cancelled: another stage failed".into()));
            }
            st.step += 1;
            self.say(format!(
                "Step {}/{} : {}\n",
                st.step, self.total, n.original
            ));
            self.instruction(&mut st, n).await?;
        }
        if is_target && !self.opts.labels.is_empty() {
            st.step += 1;
            let pairs: Vec<(String, String)> = self
                .opts
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let text = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ");
            self.say(format!("Step {}/{} : LABEL {text}\n", st.step, self.total));
            self.apply(
                &mut st,
                &Instruction::Label(pairs),
                &format!("LABEL {text}"),
            )
            .await?;
        }
        if st.image.is_empty() {
            // `FROM scratch` and nothing else: an image with no layer.
            self.commit_step(
                &mut st,
                Inputs::default(),
                "FROM scratch".into(),
                Work::Meta,
            )
            .await?;
        }
        Ok(st.image)
    }

    /// The FROM step of stage `i`: resolves the base (an earlier stage, an image, scratch).
    pub(super) async fn from(
        &self,
        i: usize,
        s: &StagePlan,
        stages: &[StagePlan],
        step: usize,
    ) -> BResult<Stage> {
        self.say(format!(
            "Step {step}/{} : {}\n",
            self.total, s.from.original
        ));
        let lookup = |k: &str| self.meta_args.get(k).cloned();
        let Instruction::From {
            image, platform, ..
        } = Instruction::from_node(&s.from, self.escape, &lookup).map_err(bad)?
        else {
            return Err(Error::internal("FROM expected").into());
        };
        check_platform(platform.as_deref()).map_err(bad_msg)?;
        let lower = image.to_ascii_lowercase();
        let earlier = stages[..i]
            .iter()
            .position(|p| p.name.as_deref() == Some(lower.as_str()))
            .and_then(|j| lock(&self.stage_images).get(&j).cloned());
        let id = if let Some(id) = earlier {
            id
        } else if lower == "scratch" {
            self.say(" ---> \n".to_string());
            return Ok(Stage {
                image: String::new(),
                config: Map::new(),
                args: BTreeMap::new(),
                cmd_set: false,
                cache_from: self.align_cache_from(""),
                step,
                last_miss: None,
            });
        } else {
            if self.opts.pull || self.d.images.resolve_id(&image).is_err() {
                self.pull(&image).await?;
            }
            self.d
                .images
                .resolve_id(&image)
                .map_err(|_| bad_msg(format!("No such image: {image}")))?
        };
        self.say(format!(" ---> {}\n", short(&id)));
        let mut st = Stage {
            config: self.image_config(&id)?,
            cache_from: self.align_cache_from(&id),
            image: id,
            args: BTreeMap::new(),
            cmd_set: false,
            step,
            last_miss: None,
        };
        // ONBUILD triggers of the base run first.
        let triggers: Vec<String> = st
            .config
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            st.config.insert("OnBuild".into(), Value::Null);
            self.say(format!("# Executing {} build trigger\n", triggers.len()));
            for t in triggers {
                let n =
                    berth_build::parser::split_node(&t, s.from.line).map_err(|e| bad_msg(e.msg))?;
                self.instruction(&mut st, &n).await?;
            }
        }
        Ok(st)
    }

    /// Pulls `image` through the daemon's registry client, its progress as build output.
    pub(super) async fn pull(&self, image: &str) -> BResult<()> {
        let (ptx, mut prx) = tokio::sync::mpsc::channel::<Message>(64);
        let d = self.d.clone();
        let name = image.to_string();
        let task = tokio::spawn(async move {
            let creds = berth_distribution::Credentials::default();
            crate::pull::pull(&d, &d.registry, &name, ("", "", None), &creds, &ptx).await
        });
        while let Some(m) = prx.recv().await {
            if m.error.is_empty() && !self.opts.quiet {
                self.send(m);
            }
        }
        task.await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(Failure::from)
    }

    pub(super) fn image_config(&self, id: &str) -> BResult<Map<String, Value>> {
        let blob = self.d.images.config_blob(id)?;
        let v: Value = serde_json::from_slice(&blob).map_err(|e| Error::internal(e.to_string()))?;
        Ok(v.get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    pub(super) fn view(&self, image: &str) -> BResult<View> {
        let layers = if image.is_empty() {
            Vec::new()
        } else {
            self.d.images.rootfs_layers(image)?
        };
        Ok(View::open(&layers)?)
    }
}
