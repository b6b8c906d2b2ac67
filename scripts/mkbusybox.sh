#!/bin/sh
# Build a busybox root filesystem tarball from Debian's busybox-static: mkbusybox.sh OUT.tar
set -eu
out=${1:?usage: mkbusybox.sh OUT.tar}
bb=/bin/busybox
[ -x "$bb" ] || { echo "mkbusybox: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/home" "$root/tmp" "$root/var/spool/mail" \
  "$root/var/www" "$root/usr" "$root/proc" "$root/sys" "$root/dev"
chmod 755 "$root"
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
for app in $("$bb" --list); do
  [ "$app" = busybox ] || ln -s busybox "$root/bin/$app"
done
cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
PW
cat > "$root/etc/group" <<'GR'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
wheel:x:10:root
www-data:x:33:
nogroup:x:65534:
GR
tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$out" .
