import { type Llama, LlamaJsonSchemaGrammar } from "node-llama-cpp";

/**
 * node-llama-cpp's grammar for a JSON schema (GBNF text), with its number rules tightened so that what it
 * accepts is what the schema means: its `integer` rule allows an exponent (`1312e-41`, not an integer), and
 * both allow exponents of up to 16 digits, which parse to Infinity or 0. Integers get no exponent; other
 * numbers at most two exponent digits (finite in float64). Throws when node-llama-cpp cannot take the schema.
 */
export function toolArgumentsGrammar(llama: Llama, schema: Readonly<Record<string, unknown>>): string {
  const grammar = new LlamaJsonSchemaGrammar(llama, schema as never).grammar;
  return grammar
    .replace(/^integer-number-rule ::= .*$/m, `integer-number-rule ::= ${NUMBER}`)
    .replace(/^fractional-number-rule ::= .*$/m, `fractional-number-rule ::= ${NUMBER} ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?`);
}

const NUMBER = '"-"? ("0" | [1-9] [0-9]{0,15})';
