#!/usr/bin/env bash
# System packages the project needs (Debian/Ubuntu): Java 17+ and Maven (local Neo4j),
# docker-compose (validates docker-compose.yml in the tests), Chromium and its driver (report rendering and Neo4j Browser tests).
# Installs only what is missing; needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if ! command -v docker-compose >/dev/null && ! (command -v docker >/dev/null && docker compose version >/dev/null 2>&1); then
  need+=(docker-compose)
fi
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "== apt-get install ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
