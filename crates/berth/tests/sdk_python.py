"""docker-py flows against berthd: sdk_python.py SOCKET REGISTRY (host:port of a registry).

Each flow is what a new user of the Python SDK writes first; an exception fails the test
(the traceback names the flow). Written for docker-py 5 (Debian's python3-docker) and 7.
"""
import io
import sys
import tarfile

import docker

sock, registry = sys.argv[1], sys.argv[2]
c = docker.DockerClient(base_url='unix://' + sock, version='auto', timeout=60)
B = 'busybox:latest'

# exec_run: the whole output, every time (berth's process runs before the client has read
# the 101 head; docker-py reads the stream from the raw socket after parsing the head).
x = c.containers.run(B, 'sleep 1000', detach=True, name='sdk')
for i in range(20):
    r = x.exec_run('echo hello %d' % i)
    assert (r.exit_code, r.output) == (0, b'hello %d\n' % i), (i, r)
    r = x.exec_run('sh -c "echo out; echo err >&2; exit 3"', demux=True)
    assert (r.exit_code, r.output) == (3, (b'out\n', b'err\n')), (i, r)
r = x.exec_run('pwd', workdir='/tmp', user='nobody', environment={'A': 'b'})
assert r.output == b'/tmp\n', r
chunks = list(x.exec_run('sh -c "echo a; echo b"', stream=True).output)
assert b''.join(chunks) == b'a\nb\n', chunks

# attach without a stream gets the logs of a finished container.
done = c.containers.run(B, 'echo logged', detach=True, name='done')
assert done.wait()['StatusCode'] == 0
assert done.attach(logs=True, stream=False) == b'logged\n'

# exec inspect as dockerd's.
e = c.api.exec_create(x.id, 'true')
c.api.exec_start(e['Id'])
ins = c.api.exec_inspect(e['Id'])
assert ins['CanRemove'] is False and ins['DetachKeys'] == '' and ins['ExitCode'] == 0, ins
assert ins['ProcessConfig']['entrypoint'] == 'true', ins

# ps filters SDK users pass: volume, publish, expose.
c.volumes.create('sdkvol')
c.containers.create(B, 'true', name='withvol', volumes={'sdkvol': {'bind': '/v', 'mode': 'rw'}},
                    ports={'80/tcp': None})
names = lambda f: sorted(y.name for y in c.containers.list(all=True, filters=f))
assert names({'volume': 'sdkvol'}) == ['withvol'], names({'volume': 'sdkvol'})
assert names({'volume': '/v'}) == ['withvol']
assert names({'publish': '80'}) == ['withvol']
assert names({'expose': '80/tcp'}) == ['withvol']
assert names({'expose': '81-90'}) == []

info = c.info()
assert info['RegistryConfig']['IndexConfigs']['docker.io']['Official'] is True, info
assert c.plugins.list() == []

# login (docker-py then sends "email": null in X-Registry-Auth), push, registry data, pull.
c.login(username='sdk', password='sdk', registry=registry)
repo = registry + '/sdk/busybox'
c.images.get(B).tag(repo, 'v1')
out = list(c.images.push(repo, tag='v1', stream=True, decode=True))
assert not [o for o in out if 'error' in o], out
rd = c.images.get_registry_data(repo + ':v1')
assert rd.id.startswith('sha256:') and rd.has_platform('linux/amd64'), rd.attrs
c.images.remove(repo + ':v1')
assert c.images.pull(repo, tag='v1').id == c.images.get(B).id

for y in c.containers.list(all=True):
    y.remove(force=True)
c.volumes.get('sdkvol').remove()
print('sdk flows ok')
