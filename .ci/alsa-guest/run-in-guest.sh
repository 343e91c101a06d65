#!/bin/bash
# Runs a script inside a throw-away QEMU guest whose kernel has the ALSA sequencer
# (snd-seq, snd-seq-dummy, snd-virmidi) and, when asked, the PCM loopback card (snd-aloop):
# the build machines' kernels have no sound support.
# The guest mounts this machine's / read-only (9p) under a tmpfs overlay, so host-built
# binaries run unchanged; $OUT (read-write) appears in the guest as /mnt/out.
#   usage: run-in-guest.sh /abs/path/guest-script.sh    (exit status: the script's)
# GUEST_MODULES: more modules to load at boot, from those the image holds (`optional` below),
# e.g. GUEST_MODULES=snd-aloop for a "Loopback" card (hw:Loopback,0,0 plays into
# hw:Loopback,1,0). GUEST_MEMORY (MiB, default 1024), GUEST_CPUS (default 1).
# GUEST_ICOUNT: QEMU's -icount option, e.g. "shift=0,sleep=off": the guest's clocks then count
# executed instructions (here one per virtual ns) instead of host time, so that a real-time
# program that emulation makes ~30x too slow still meets its deadlines in the guest's time.
# Needs root (apt-get download of Debian's kernel package the first time) and the packages
# qemu-system-x86 busybox-static cpio kmod (installed by .ci/install-deps).
set -euo pipefail
script=${1:?usage: $0 /abs/path/guest-script.sh}
case "$script" in *' '*) echo "run-in-guest: the script path must not contain spaces" >&2; exit 2;; esac
WORK=${WORK:-/tmp/ddsp-piano-guest}
OUT=${OUT:-$WORK/out}
TIMEOUT=${TIMEOUT:-600}
mkdir -p "$WORK" "$OUT"
rm -f "$OUT/.status" "$OUT/console.log"
cd "$WORK"

modules=(virtio_pci 9pnet_virtio 9p overlay snd-seq snd-seq-dummy snd-virmidi)
# In the image, loaded only when GUEST_MODULES names them.
optional=(snd-aloop)
GUEST_MODULES=${GUEST_MODULES:-}
for m in $GUEST_MODULES; do
  case " ${optional[*]} " in *" $m "*) ;; *) echo "run-in-guest: module $m is not in the image (${optional[*]})" >&2; exit 2;; esac
done
# The cached image is rebuilt when what it holds changes.
image_key="modules=${modules[*]} optional=${optional[*]} v2"

build_image() {
  # Debian's current kernel, only the parts the guest needs, and a busybox initramfs.
  local pkg version
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { echo "run-in-guest: no linux-image package known to apt (run apt-get update)" >&2; exit 97; }
  version=${pkg#linux-image-}
  rm -rf deb tree root && mkdir -p deb tree root
  (cd deb && apt-get download "$pkg" >/dev/null)
  dpkg-deb --fsys-tarfile deb/*.deb | tar -x -C tree --wildcards \
    "./boot/vmlinuz-$version" "./lib/modules/$version/modules.*" "./lib/modules/$version/kernel/sound/*" \
    "./lib/modules/$version/kernel/fs/9p/*" "./lib/modules/$version/kernel/net/9p/*" \
    "./lib/modules/$version/kernel/fs/netfs/*" "./lib/modules/$version/kernel/fs/fscache/*" \
    "./lib/modules/$version/kernel/fs/overlayfs/*" "./lib/modules/$version/kernel/drivers/virtio/*"
  depmod -b tree "$version"
  mkdir -p root/{bin,proc,sys,dev,mnt/lower,mnt/rw,mnt/root}
  cp /bin/busybox root/bin/
  for applet in sh mount mkdir modprobe poweroff cat sed chroot sync; do ln -s busybox "root/bin/$applet"; done
  local src=tree/lib/modules/$version
  for m in "${modules[@]}" "${optional[@]}"; do
    modprobe -d tree -S "$version" --show-depends "$m" | awk '/^insmod/ {print $2}' | while read -r f; do
      local rel=${f#"$PWD/$src/"}; rel=${rel#"$src/"}
      mkdir -p "root/lib/modules/$version/$(dirname "$rel")"
      cp "$f" "root/lib/modules/$version/$rel"
    done
  done
  cp "$src"/modules.order "$src"/modules.builtin "$src"/modules.builtin.modinfo "root/lib/modules/$version/"
  depmod -b root "$version"
  cat > root/init <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci 9pnet_virtio 9p overlay snd-seq snd-seq-dummy snd-virmidi; do modprobe $m; done
for m in $(sed -n 's/.*guest_modules=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' '); do modprobe $m; done
cmd=$(sed -n 's/.*guest_cmd=\([^ ]*\).*/\1/p' /proc/cmdline)
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot /mnt/lower
mount -t tmpfs tmpfs /mnt/rw; mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root
r=/mnt/root
mount --move /dev $r/dev; mount -t proc proc $r/proc; mount -t sysfs sys $r/sys
mount -t tmpfs tmpfs $r/run; mkdir -p $r/dev/shm; mount -t tmpfs tmpfs $r/dev/shm
mkdir -p $r/mnt/out; mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out $r/mnt/out
chroot $r /bin/sh -c "$cmd"; status=$?
echo $status > $r/mnt/out/.status; sync; poweroff -f
INIT
  chmod +x root/init
  (cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initrd.gz
  cp "tree/boot/vmlinuz-$version" vmlinuz
  rm -rf deb tree root
  echo "$image_key" > image.key
}

[ -f vmlinuz ] && [ -f initrd.gz ] && [ "$(cat image.key 2>/dev/null)" = "$image_key" ] || build_image
extra=
icount=()
[ -n "${GUEST_ICOUNT:-}" ] && icount=(-icount "$GUEST_ICOUNT")
[ -n "$GUEST_MODULES" ] && extra=" guest_modules=$(echo $GUEST_MODULES | tr ' ' ',')"

# Software emulation (TCG): the machines' /dev/kvm cannot run a stock kernel. One vCPU boots fastest.
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "${GUEST_MEMORY:-1024}" -smp "${GUEST_CPUS:-1}" \
  "${icount[@]}" -display none -monitor none -serial file:"$OUT/console.log" -no-reboot \
  -kernel vmlinuz -initrd initrd.gz \
  -append "console=ttyS0 panic=-1 quiet guest_cmd=$script$extra" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$OUT",mount_tag=out,security_model=none </dev/null \
  || { echo "run-in-guest: qemu failed or timed out ($?)"; tr -d '\r' < "$OUT/console.log" | tail -40; exit 99; }
tr -d '\r' < "$OUT/console.log" | grep -a -v -E '^\s*$|^\x1b' || true
[ -f "$OUT/.status" ] || { echo "run-in-guest: the guest reported no exit status"; exit 98; }
exit "$(cat "$OUT/.status")"
