// The typed statements of allowlist.sql.
import type { AllowRule } from '../../client/types.js';
import { statement } from '../../db/statement.js';

export const insertAllowRule = statement<
  { groupId: number; program: string; argsPattern: string | null; argsPatterns: string[] | null; allowDotdot: boolean; note: string | null },
  AllowRule
>({
  groupId: true, program: true, argsPattern: true, argsPatterns: true, allowDotdot: true, note: true,
});
/** groupId null: every group's rules. */
export const listAllowRules = statement<{ groupId: number | null }, AllowRule>({ groupId: true });
export const deleteAllowRule = statement<{ ruleId: number }, AllowRule>({ ruleId: true });
