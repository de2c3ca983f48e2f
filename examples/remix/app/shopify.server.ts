/**
 * Stand-in for the app's `~/shopify.server` (which wraps `@shopify/shopify-app-remix`):
 * only the part the render route uses, with the same shape, so the route type-checks
 * without the Shopify packages. App-proxy requests carry a signature the real one checks.
 */

export interface AppProxyContext {
  session: { shop: string } | undefined;
}

export const authenticate = {
  public: {
    async appProxy(request: Request): Promise<AppProxyContext> {
      const shop = new URL(request.url).searchParams.get("shop");
      return { session: shop ? { shop } : undefined };
    },
  },
};
