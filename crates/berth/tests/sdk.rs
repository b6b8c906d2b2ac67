//! A real Engine API SDK against berthd: Rust's `bollard` crate, as a Docker user's program
//! would use it, runs container, image, network, volume, exec and build flows over the daemon's
//! unix socket. Its typed models fail on any answer that is not shaped as dockerd's.

mod common;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListImagesOptions, ListVolumesOptions,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptions, TagImageOptionsBuilder,
};
use bollard::Docker;
use common::Daemon;
use futures_util::StreamExt;

async fn connect(d: &Daemon) -> Docker {
    let sock = d.sock.to_str().expect("socket path");
    Docker::connect_with_unix(sock, 120, bollard::API_DEFAULT_VERSION)
        .expect("connect")
        .negotiate_version()
        .await
        .expect("negotiate the API version")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).expect("tar path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).expect("tar entry");
    }
    b.into_inner().expect("tar")
}

#[test]
fn container_flow() {
    let d = Daemon::start();
    runtime().block_on(async {
        let docker = connect(&d).await;
        let body = ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 3".into(),
            ]),
            labels: Some([("sdk".to_string(), "yes".to_string())].into()),
            host_config: Some(HostConfig {
                memory: Some(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name("sdk-c")
            .build();
        let created = docker
            .create_container(Some(opts), body)
            .await
            .expect("create");
        assert!(!created.id.is_empty());
        docker.start_container("sdk-c", None).await.expect("start");
        let waited: Vec<_> = docker.wait_container("sdk-c", None).collect().await;
        // bollard reports a non-zero exit as an error carrying the code.
        match waited.as_slice() {
            [Err(bollard::errors::Error::DockerContainerWaitError { code, .. })] => {
                assert_eq!(*code, 3)
            }
            other => panic!("wait: {other:?}"),
        }
        let logs: Vec<String> = docker
            .logs(
                "sdk-c",
                Some(
                    LogsOptionsBuilder::default()
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            )
            .map(|l| l.expect("log line").to_string())
            .collect()
            .await;
        let all = logs.concat();
        assert!(all.contains("out") && all.contains("err"), "{logs:?}");
        let info = docker
            .inspect_container("sdk-c", None)
            .await
            .expect("inspect");
        let state = info.state.expect("state");
        assert_eq!(state.exit_code, Some(3));
        assert_eq!(state.running, Some(false));
        assert_eq!(
            info.config
                .and_then(|c| c.labels)
                .and_then(|l| l.get("sdk").cloned()),
            Some("yes".to_string())
        );
        assert_eq!(info.host_config.and_then(|h| h.memory), Some(64 << 20));
        let listed = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .expect("list");
        assert!(listed
            .iter()
            .any(|c| c.id.as_deref() == Some(created.id.as_str())));
        docker
            .remove_container(
                "sdk-c",
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove");
        let gone = docker.inspect_container("sdk-c", None).await;
        assert!(
            matches!(
                gone,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                })
            ),
            "{gone:?}"
        );
    });
}

#[test]
fn image_and_build_flow() {
    let d = Daemon::start();
    runtime().block_on(async {
        let docker = connect(&d).await;
        let images = docker
            .list_images(None::<ListImagesOptions>)
            .await
            .expect("list images");
        assert!(
            images.iter().any(|i| i.repo_tags.iter().any(|t| t == "busybox:latest")),
            "{images:?}"
        );
        let busybox = docker.inspect_image("busybox").await.expect("inspect image");
        assert!(busybox.id.as_deref().unwrap_or_default().starts_with("sha256:"));
        docker
            .tag_image(
                "busybox",
                Some(TagImageOptionsBuilder::default().repo("sdk/tagged").tag("v1").build()),
            )
            .await
            .expect("tag");
        let tagged = docker.inspect_image("sdk/tagged:v1").await.expect("inspect tag");
        assert_eq!(tagged.id, busybox.id);

        let ctx = tar_of(&[
            ("Dockerfile", b"FROM busybox\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\nLABEL built=by-sdk\n"),
            ("hello.txt", b"hello from the context\n"),
        ]);
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t("sdk/built:1")
            .rm(true)
            .build();
        let mut stream = docker.build_image(opts, None, Some(bollard::body_full(ctx.into())));
        let mut said = String::new();
        while let Some(item) = stream.next().await {
            let info = item.expect("build progress");
            said.push_str(info.stream.as_deref().unwrap_or_default());
        }
        assert!(said.contains("hello from the context"), "{said}");
        let built = docker.inspect_image("sdk/built:1").await.expect("built image");
        assert_eq!(
            built.config.and_then(|c| c.labels).and_then(|l| l.get("built").cloned()),
            Some("by-sdk".to_string())
        );

        for name in ["sdk/tagged:v1", "sdk/built:1"] {
            let deleted = docker
                .remove_image(name, Some(RemoveImageOptionsBuilder::default().build()), None)
                .await
                .expect("remove image");
            assert!(!deleted.is_empty(), "{name}");
        }
        let gone = docker.inspect_image("sdk/built:1").await;
        assert!(gone.is_err(), "{gone:?}");
    });
}

#[test]
fn network_volume_and_exec_flow() {
    let d = Daemon::start();
    let subnet = d.user_subnet(3);
    runtime().block_on(async {
        let docker = connect(&d).await;
        let vol = docker
            .create_volume(VolumeCreateRequest {
                name: Some("sdk-vol".into()),
                labels: Some([("k".to_string(), "v".to_string())].into()),
                ..Default::default()
            })
            .await
            .expect("create volume");
        assert_eq!(vol.name, "sdk-vol");
        let vols = docker
            .list_volumes(None::<ListVolumesOptions>)
            .await
            .expect("list volumes");
        assert!(vols
            .volumes
            .unwrap_or_default()
            .iter()
            .any(|v| v.name == "sdk-vol"));

        let net = docker
            .create_network(NetworkCreateRequest {
                name: "sdk-net".into(),
                ipam: Some(bollard::models::Ipam {
                    config: Some(vec![bollard::models::IpamConfig {
                        subnet: Some(subnet),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("create network");
        assert!(net.id.len() >= 12, "{net:?}");

        let body = ContainerCreateBody {
            image: Some("busybox".into()),
            cmd: Some(vec!["sleep".into(), "60".into()]),
            host_config: Some(HostConfig {
                binds: Some(vec!["sdk-vol:/data".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name("sdk-x")
            .build();
        docker
            .create_container(Some(opts), body)
            .await
            .expect("create");
        docker.start_container("sdk-x", None).await.expect("start");
        docker
            .connect_network(
                "sdk-net",
                NetworkConnectRequest {
                    container: "sdk-x".into(),
                    endpoint_config: Some(EndpointSettings {
                        aliases: Some(vec!["sdk-alias".into()]),
                        ..Default::default()
                    }),
                },
            )
            .await
            .expect("connect");
        let inspected = docker
            .inspect_network("sdk-net", None)
            .await
            .expect("inspect net");
        let members = inspected.containers.unwrap_or_default();
        assert_eq!(members.len(), 1, "{members:?}");

        let exec = docker
            .create_exec(
                "sdk-x",
                CreateExecOptions {
                    cmd: Some(vec![
                        "sh",
                        "-c",
                        "echo exec-out > /data/f; cat /data/f; exit 4",
                    ]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .expect("create exec");
        match docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .expect("start exec")
        {
            StartExecResults::Attached { mut output, .. } => {
                let mut text = String::new();
                while let Some(chunk) = output.next().await {
                    text.push_str(&chunk.expect("exec output").to_string());
                }
                assert_eq!(text.trim(), "exec-out");
            }
            StartExecResults::Detached => panic!("exec started detached"),
        }
        let ei = docker.inspect_exec(&exec.id).await.expect("inspect exec");
        assert_eq!(ei.exit_code, Some(4));
        assert_eq!(ei.running, Some(false));

        docker
            .remove_container(
                "sdk-x",
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
            .expect("remove container");
        docker
            .remove_network("sdk-net")
            .await
            .expect("remove network");
        docker
            .remove_volume("sdk-vol", None::<RemoveVolumeOptions>)
            .await
            .expect("remove volume");
        assert!(docker.inspect_volume("sdk-vol").await.is_err());
    });
}

#[test]
fn system_flow() {
    let d = Daemon::start();
    runtime().block_on(async {
        let docker = connect(&d).await;
        assert_eq!(docker.ping().await.expect("ping"), "OK");
        let version = docker.version().await.expect("version");
        assert!(version.api_version.is_some(), "{version:?}");
        let info = docker.info().await.expect("info");
        assert_eq!(info.images, Some(1), "{info:?}");
        let swarm = info.swarm.expect("info's swarm section");
        assert_eq!(
            swarm.local_node_state,
            Some(bollard::models::LocalNodeState::INACTIVE)
        );
        // bollard's model is API 1.52's (`ImageUsage`…); at 1.50 it must still decode.
        docker
            .df(None::<bollard::query_parameters::DataUsageOptions>)
            .await
            .expect("df");
        let networks = docker.list_networks(None).await.expect("networks");
        assert!(networks.iter().any(|n| n.name.as_deref() == Some("bridge")));
        // Swarm-mode calls fail as on dockerd outside a swarm: 503, not 404.
        let swarm = docker.inspect_swarm().await;
        assert!(
            matches!(
                swarm,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 503,
                    ..
                })
            ),
            "{swarm:?}"
        );
    });
}
