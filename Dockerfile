# passthru's node agent image (Kubernetes mode: deploy/). Node 20, as package.json's engines.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# kmod: modprobe for the vfio keeper; udev: udevadm monitor for uevents; pci.ids: names for
# descriptions and resourceNames (Harvester takes them from its image's pci.ids too).
RUN apt-get update \
 && apt-get install -y --no-install-recommends kmod udev pci.ids \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/passthru
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
# The CLI bundle (scripts/bundle.ts), and what it reads beside the package at run time: the
# kubelet's protos (device plugin) and the shipped topologies (--sim NAME).
COPY --from=build /src/dist/bundle ./dist/bundle
COPY proto ./proto
COPY topologies ./topologies
RUN ln -s /opt/passthru/dist/bundle/passthru.js /usr/local/bin/passthru
ENTRYPOINT ["node", "/opt/passthru/dist/bundle/passthru.js"]
CMD ["agent", "--kubernetes"]
