/** Module resolve hook (see register.mjs): adds the `countersign-source` export condition. */
const CONDITION = 'countersign-source';

export async function resolve(specifier, context, next) {
  const conditions = context.conditions ?? [];
  return next(specifier, conditions.includes(CONDITION) ? context : { ...context, conditions: [CONDITION, ...conditions] });
}
