import { apiErrors } from "../errors/api-error.js";
import type { ChatCompletionRequest } from "./chat-schema.js";

/** What a chat request asks of tools: null = no tool calls (none offered, or `tool_choice: "none"`). */
export type RequestedToolMode = null | "auto" | "required" | { readonly name: string };

/** Validates `tools` / `tool_choice` against each other and the rest of the request. */
export function requestedToolMode(request: ChatCompletionRequest): RequestedToolMode {
  const tools = request.tools ?? [];
  const choice = request.tool_choice;
  const names = new Set<string>();
  for (const tool of tools) {
    if (names.has(tool.function.name)) throw apiErrors.invalidField("tools", `The function '${tool.function.name}' is offered twice.`);
    names.add(tool.function.name);
    const parameters = tool.function.parameters;
    // Arguments are a JSON object (OpenAI's rule): the schema's root must describe one.
    if (parameters !== undefined && parameters.type !== "object") {
      throw apiErrors.invalidField(
        "tools",
        `The parameters of function '${tool.function.name}' must be a JSON schema with "type": "object".`,
      );
    }
  }
  if (tools.length === 0) {
    if (choice !== undefined && choice !== "none") {
      throw apiErrors.invalidField("tool_choice", "'tool_choice' needs 'tools' to choose from.");
    }
    return null;
  }
  if (choice === "none") return null;
  const mode = choice === undefined ? "auto" : typeof choice === "string" ? choice : { name: choice.function.name };
  if (typeof mode === "object" && !names.has(mode.name)) {
    throw apiErrors.invalidField("tool_choice", `'tool_choice' names '${mode.name}', which is not among 'tools'.`);
  }
  if ((request.n ?? 1) > 1) throw apiErrors.invalidField("n", "'n' above 1 cannot be combined with 'tools'.");
  if (request.logprobs === true) throw apiErrors.invalidField("logprobs", "'logprobs' cannot be combined with 'tools'.");
  if (request.response_format && request.response_format.type !== "text") {
    throw apiErrors.invalidField(
      "response_format",
      "'response_format' cannot be combined with 'tools' (a call's arguments follow its schema).",
    );
  }
  return mode;
}
