//! Id mappings of containers in user namespaces: which host ids a container's ids are, so
//! that what a remapped container wrote is archived with the ids it has inside (`commit`,
//! builds, `export`, `cp`), as Docker does under `--userns-remap`.

/// One line of a uid or gid map: `size` ids from `container` on are `host` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// A container's uid and gid maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMappings {
    pub uids: Vec<IdMap>,
    pub gids: Vec<IdMap>,
}

/// A host id for a container id under `maps`, if it maps.
fn to_host(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.container && id - m.container < m.size)
        .map(|m| m.host + (id - m.container))
}

/// The container id a host id stands for under `maps`, if any.
fn to_container(maps: &[IdMap], id: u32) -> Option<u32> {
    maps.iter()
        .find(|m| id >= m.host && id - m.host < m.size)
        .map(|m| m.container + (id - m.host))
}

impl IdMappings {
    /// Host uid and gid of the container's root.
    pub fn root(&self) -> (u32, u32) {
        (
            to_host(&self.uids, 0).unwrap_or(0),
            to_host(&self.gids, 0).unwrap_or(0),
        )
    }

    /// Host owner of what the container's `uid:gid` owns (unmapped ids stay as they are).
    pub fn host_owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        (
            to_host(&self.uids, uid).unwrap_or(uid),
            to_host(&self.gids, gid).unwrap_or(gid),
        )
    }

    /// The container's view of a host owner. Ids outside the maps stay as they are: the
    /// image's own files, seen without the idmapping, are already in the container's ids.
    pub fn container_owner(&self, uid: u32, gid: u32) -> (u32, u32) {
        (
            to_container(&self.uids, uid).unwrap_or(uid),
            to_container(&self.gids, gid).unwrap_or(gid),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways() {
        let m = vec![
            IdMap {
                container: 0,
                host: 100000,
                size: 65536,
            },
            IdMap {
                container: 65536,
                host: 300000,
                size: 10,
            },
        ];
        let ids = IdMappings {
            uids: m.clone(),
            gids: m,
        };
        assert_eq!(ids.root(), (100000, 100000));
        assert_eq!(ids.host_owner(65537, 1), (300001, 100001));
        assert_eq!(ids.container_owner(300001, 100001), (65537, 1));
        assert_eq!(ids.container_owner(5, 7), (5, 7));
        assert_eq!(ids.host_owner(70000, 0), (70000, 100000));
    }
}
