/** Stand-in for the app's image store: where an output image goes, and its key. */

export async function storeRenderImage(runId: string, variantId: string, bytes: Uint8Array): Promise<string> {
  void bytes;
  return `see-it-now/${runId}/${variantId}.png`;
}
