#!/bin/sh
# Regenerates README's pictures of rolegate's messages: docs/approval.png,
# docs/summary.png (and docs/revocation.png once the demo shows a
# revocation), and docs/pictures.sha256, the hash of the blocks behind them
# that TestPicturesShowTheCurrentMessages compares.
#
# The pages come from `bot demo --html` (rolegate's own blocks, rendered by
# internal/slackapp/blockview); Debian's headless Chromium screenshots them:
#   apt-get install -y chromium fonts-lato fonts-noto-color-emoji
# Run from anywhere in the checkout: scripts/pictures.sh
# (CHROMIUM=/path/to/chromium to use another binary.)
set -eu
cd "$(dirname "$0")/.."
chromium=${CHROMIUM:-chromium}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go run ./cmd/bot demo --html "$tmp/html" >/dev/null
mkdir -p docs
for name in approval summary revocation; do
	if [ ! -f "$tmp/html/$name.html" ]; then
		echo "no $name picture: the demo shows no $name message in this build"
		continue
	fi
	# --no-sandbox: Chromium refuses to run as root with its sandbox (containers).
	if ! "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
		--disable-background-networking --disable-component-update --disable-sync \
		--hide-scrollbars --force-device-scale-factor=2 --user-data-dir="$tmp/profile" \
		--window-size=900,1400 --screenshot="$tmp/$name.png" "file://$tmp/html/$name.html" \
		>"$tmp/chromium.log" 2>&1; then
		cat "$tmp/chromium.log" >&2
		exit 1
	fi
	go run ./scripts/pngtrim "$tmp/$name.png" "docs/$name.png"
	echo "docs/$name.png"
done
cp "$tmp/html/pictures.sha256" docs/pictures.sha256
echo "docs/pictures.sha256"
