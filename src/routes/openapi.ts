import { Hono } from "hono";
import { openApiYaml } from "../protocol/openapi-document.js";

export function openapiRoutes(): Hono {
  const app = new Hono();
  app.get("/openapi.yaml", (c) => c.body(openApiYaml(), 200, { "Content-Type": "application/yaml; charset=utf-8" }));
  return app;
}
