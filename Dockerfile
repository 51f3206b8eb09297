# syntax=docker/dockerfile:1
#
# CPU image (default):   docker build -t lori-server .
# CUDA image:            docker build -t lori-server:cuda \
#                          --build-arg RUNTIME_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04 .
#                        docker run --gpus all -p 8080:8080 lori-server:cuda serve --gpu cuda --host 0.0.0.0
# node-llama-cpp ships prebuilt CUDA 13 binaries (@node-llama-cpp/linux-x64-cuda), so the CUDA variant only
# needs the CUDA runtime libraries from the base image; nothing is compiled for the GPU here.
ARG RUNTIME_IMAGE=node:20-bookworm-slim

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY native ./native
COPY src ./src
RUN npm ci && npm prune --omit=dev

FROM ${RUNTIME_IMAGE}
# The Node.js runtime comes from the build stage, so any glibc base image (e.g. a CUDA one) works.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /app /app
COPY openapi.yaml README.md ./
COPY adapters ./adapters
COPY models ./models
ENV LORI_HOST=0.0.0.0 LORI_PORT=8080 NODE_ENV=production
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD node -e "fetch('http://127.0.0.1:'+(process.env.LORI_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve"]
