//! The COPY and ADD steps: destination and `--chown`/`--chmod` worked out against the stage's
//! image, sources from the context (globs, digests for the cache), another stage or image
//! (`--from`), URLs and heredocs, staged into a directory that becomes the layer. The file
//! work itself is in `files`; it must not run containers.

use super::files;
use super::{bad_msg, lock, BResult, Builder, Stage, Work};
use crate::error::Error;
use berth_build::cache::Inputs;
use berth_build::instruction::Copy;
use std::path::{Path, PathBuf};

impl Builder {
    /// COPY and ADD.
    pub(super) async fn copy(&self, st: &mut Stage, c: &Copy, mut inputs: Inputs) -> BResult<()> {
        let kw = if c.add { "ADD" } else { "COPY" };
        let view = self.view(&st.image)?;
        let workdir = st.str("WorkingDir");
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!(
                "{}/{}",
                if workdir.is_empty() {
                    ""
                } else {
                    workdir.trim_end_matches('/')
                },
                c.dest
            )
        };
        // Cleaned as an absolute path, so that `..` never climbs out of the image's root.
        let dest_rel = berth_build::ignore::clean(&format!("/{dest}"))
            .trim_start_matches('/')
            .to_string();
        let dest_dir = dest.ends_with('/')
            || dest.ends_with("/.")
            || dest_rel.is_empty()
            || view.is_dir(&dest_rel);
        if c.srcs.len() > 1 && !dest_dir {
            return Err(bad_msg(format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let perms = files::Perms {
            owner: match &c.chown {
                Some(spec) => view.resolve_owner(spec)?,
                None => (0, 0),
            },
            chmod: c.chmod.as_deref().map(files::parse_chmod).transpose()?,
        };
        let stage = self.scratch.join(format!("stage-{}", st.step));
        // Where one source lands: into the destination directory, or as the destination.
        let target = |name: &str, is_dir: bool| -> PathBuf {
            if is_dir || !dest_dir {
                stage.join(&dest_rel)
            } else {
                stage.join(&dest_rel).join(name)
            }
        };
        let mut heredocs = Vec::new();
        let mut urls = Vec::new();
        let mut locals = Vec::new();
        for s in &c.srcs {
            if let Some(h) = s
                .strip_prefix("<<")
                .map(|n| n.trim_start_matches('-').trim_matches(['"', '\'']))
                .and_then(|n| c.heredocs.iter().find(|h| h.name == n))
            {
                heredocs.push(h.clone());
            } else if c.add && (s.starts_with("http://") || s.starts_with("https://")) {
                urls.push(s.clone());
            } else {
                locals.push(s.clone());
            }
        }
        if let Some(from) = &c.from {
            let lower = from.to_ascii_lowercase();
            let img = match self.stage_by_name(&lower) {
                Some(id) => id,
                None => {
                    self.d
                        .images
                        .get(from)
                        .map_err(|_| {
                            bad_msg(format!("{kw} --from: No such image or stage: {from}"))
                        })?
                        .id
                }
            };
            inputs.instruction.push_str(&format!(" from-image={img}"));
            let created_by = copy_created_by(kw, &inputs, locals.len(), &c.dest);
            if self.hit(st, &inputs, &created_by).await? {
                return Ok(());
            }
            let src_view = self.view(&img)?;
            // `--from` keeps the source's owners and modes unless told otherwise.
            let chown_or_chmod = c.chown.is_some() || c.chmod.is_some();
            let stage2 = stage.clone();
            let dest_rel2 = dest_rel.clone();
            tokio::task::spawn_blocking(move || -> BResult<()> {
                // Globs expand against the source image's files.
                let mut sources = Vec::new();
                for s in &locals {
                    let rel = berth_build::ignore::clean(s.trim_start_matches('/'));
                    if rel.contains(['*', '?', '[']) {
                        let matched = src_view.glob(&rel);
                        if matched.is_empty() {
                            return Err(bad_msg(format!(
                                "{kw} failed: no source files were specified ({s})"
                            )));
                        }
                        sources.extend(matched);
                    } else {
                        sources.push(rel);
                    }
                }
                if sources.len() > 1 && !dest_dir {
                    return Err(bad_msg(format!(
                        "When using {kw} with more than one source file, the destination must be a directory and end with a /"
                    )));
                }
                // The staging dir is written by descriptors from its top, as the source is read.
                std::fs::create_dir_all(&stage2)?;
                let stage_root = berth_image::archive::Root::open(&stage2)?;
                for rel in &sources {
                    let is_dir = src_view.is_dir(rel);
                    let name = rel.rsplit('/').next().unwrap_or(rel);
                    let t = if is_dir || !dest_dir {
                        files::staged(&stage_root, &dest_rel2)?
                    } else {
                        files::staged(&stage_root, &format!("{dest_rel2}/{name}"))?
                    };
                    if !src_view.copy_out(rel, &t)? {
                        return Err(bad_msg(format!(
                            "{kw} failed: stat /{rel}: file does not exist"
                        )));
                    }
                    if chown_or_chmod {
                        files::apply_perms(&t, perms)?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
            return self
                .commit_step(st, inputs, created_by, Work::Layer(stage))
                .await;
        }
        let ctx = self.ctx.clone();
        let resolved = {
            let (ctx, locals) = (ctx.clone(), locals.clone());
            tokio::task::spawn_blocking(move || -> BResult<_> {
                let r = files::resolve_sources(&ctx, &locals, kw)?;
                let digests = files::digest_sources(&ctx, &r)?;
                Ok((r, digests))
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??
        };
        let (resolved, digests) = resolved;
        if resolved.len() + urls.len() + heredocs.len() > 1 && !dest_dir {
            return Err(bad_msg(format!(
                "When using {kw} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        inputs.files = digests;
        let mut downloads = Vec::new();
        for u in &urls {
            let u2 = u.clone();
            let body = tokio::task::spawn_blocking(move || files::download(&u2))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&body);
            inputs
                .files
                .insert(u.clone(), berth_build::cache::hex(&digest));
            downloads.push((u.clone(), body));
        }
        // Unquoted heredoc delimiters expand the body's variables.
        for h in &mut heredocs {
            if h.expand {
                let lookup = |k: &str| st.lookup(k);
                h.content = berth_build::expand::vars_only(&h.content, self.escape, &lookup)
                    .map_err(bad_msg)?;
            }
            inputs
                .files
                .insert(format!("<<{}", h.name), h.content.clone());
        }
        let created_by = copy_created_by(
            kw,
            &inputs,
            resolved.len() + urls.len() + heredocs.len(),
            &c.dest,
        );
        if self.hit(st, &inputs, &created_by).await? {
            return Ok(());
        }
        let add = c.add;
        let targets: Vec<(String, PathBuf, bool)> = resolved
            .iter()
            .map(|r| {
                let is_dir = std::fs::symlink_metadata(ctx.join(r)).is_ok_and(|m| m.is_dir());
                let name = r.rsplit('/').next().unwrap_or(r).to_string();
                (r.clone(), target(&name, is_dir), is_dir)
            })
            .collect();
        let url_targets: Vec<(PathBuf, Vec<u8>)> = downloads
            .into_iter()
            .map(|(u, body)| {
                let name = u
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("download")
                    .to_string();
                (target(&name, false), body)
            })
            .collect();
        let here_targets: Vec<(PathBuf, String)> = heredocs
            .iter()
            .map(|h| (target(&h.name, false), h.content.clone()))
            .collect();
        let stage2 = stage.clone();
        tokio::task::spawn_blocking(move || -> BResult<()> {
            std::fs::create_dir_all(&stage2)?;
            for (rel, t, is_dir) in targets {
                let src = ctx.join(&rel);
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                if !is_dir && add && files::is_archive(&src) {
                    let dir = if dest_dir {
                        t.parent().map(Path::to_path_buf).unwrap_or(t.clone())
                    } else {
                        t.clone()
                    };
                    files::extract_archive(&src, &dir)?;
                } else {
                    files::copy_in(&src, &t, perms)?;
                }
            }
            for (t, body) in url_targets {
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&t, body)?;
                let mode = perms.chmod.unwrap_or(0o600);
                std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                std::os::unix::fs::lchown(&t, Some(perms.owner.0), Some(perms.owner.1))?;
            }
            for (t, content) in here_targets {
                if let Some(p) = t.parent() {
                    std::fs::create_dir_all(p)?;
                }
                std::fs::write(&t, content)?;
                let mode = perms.chmod.unwrap_or(0o644);
                std::fs::set_permissions(&t, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
                std::os::unix::fs::lchown(&t, Some(perms.owner.0), Some(perms.owner.1))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.commit_step(st, inputs, created_by, Work::Layer(stage))
            .await
    }

    /// The image of an earlier stage named `name` (or numbered).
    pub(super) fn stage_by_name(&self, name: &str) -> Option<String> {
        let i = self
            .stage_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .or_else(|| name.parse::<usize>().ok())?;
        lock(&self.stage_images).get(&i).cloned()
    }
}

/// Docker's history line of a COPY/ADD: what was copied as a digest (so that a changed file
/// never matches a `--cache-from` image's step) and where to.
fn copy_created_by(kw: &str, inputs: &Inputs, sources: usize, dest: &str) -> String {
    let digest = Inputs {
        parent: String::new(),
        ..inputs.clone()
    }
    .key();
    let kind = match (sources, inputs.files.keys().any(|k| k.ends_with('/'))) {
        (1, false) => "file",
        (1, true) => "dir",
        _ => "multi",
    };
    format!("/bin/sh -c #(nop) {kw} {kind}:{digest} in {dest} ")
}
