export { createEmbeddedGateway, type EmbeddedGateway, type EmbeddedOptions } from './embedded.ts';
