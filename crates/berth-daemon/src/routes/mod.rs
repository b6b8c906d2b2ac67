//! The Engine API route table; handlers live in one file per area. Routes are adapters: they
//! turn requests into calls of the daemon's services (container, build, images, networks,
//! volumes) and results into Docker's JSON; `front` and `listen` are above them, nothing below
//! imports them.

mod build;
mod container_list;
mod containers;
mod distribution;
mod exec;
mod files;
pub mod hijack;
mod images;
mod monitor;
mod networks;
mod plugins;
mod swarm;
mod system;
mod volumes;

use crate::state::Daemon;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub type St = axum::extract::State<Arc<Daemon>>;

pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/auth", post(system::auth))
        .route("/system/df", get(system::df))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/events", get(monitor::events))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(container_list::list))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route(
            "/containers/{id}/{alias}",
            axum::routing::delete(containers::remove_link),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/stats", get(monitor::stats))
        .route(
            "/containers/{id}/archive",
            get(files::archive).head(files::archive).put(files::archive),
        )
        .route("/containers/{id}/export", get(files::export))
        .route("/containers/{id}/changes", get(files::changes))
        .route("/containers/{id}/top", get(files::top))
        .route("/commit", post(files::commit))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route("/images/search", get(images::search))
        .route("/distribution/{*rest}", get(distribution::inspect))
        .route("/images/{*rest}", axum::routing::any(images::by_name))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/plugins", get(plugins::list))
        .route("/plugins/pull", post(plugins::unsupported))
        .route("/plugins/create", post(plugins::unsupported))
        .route("/plugins/privileges", get(plugins::unsupported))
        .route("/plugins/{*rest}", axum::routing::any(plugins::by_name))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect)
                .delete(volumes::remove)
                .put(swarm::volume_update),
        )
        .route("/swarm", axum::routing::any(swarm::swarm))
        .route("/swarm/{*rest}", axum::routing::any(swarm::swarm))
        .route("/nodes", axum::routing::any(swarm::cluster))
        .route("/nodes/{*rest}", axum::routing::any(swarm::cluster))
        .route("/services", axum::routing::any(swarm::cluster))
        .route("/services/{*rest}", axum::routing::any(swarm::cluster))
        .route("/tasks", axum::routing::any(swarm::cluster))
        .route("/tasks/{*rest}", axum::routing::any(swarm::cluster))
        .route("/secrets", axum::routing::any(swarm::cluster))
        .route("/secrets/{*rest}", axum::routing::any(swarm::cluster))
        .route("/configs", axum::routing::any(swarm::cluster))
        .route("/configs/{*rest}", axum::routing::any(swarm::cluster))
        .fallback(system::not_found)
        // dockerd answers a known path with the wrong method as an unknown page.
        .method_not_allowed_fallback(system::not_found)
        .with_state(d)
}
