/** Stand-in for the app's prompt builder: the final prompt sent to the model for one variant. */

import type { PromptVariant } from "./types";

export function buildFinalPrompt(variant: PromptVariant, resolvedFacts: Record<string, unknown>): string {
  return `${variant.prompt}\n\nFacts: ${JSON.stringify(resolvedFacts)}`;
}
