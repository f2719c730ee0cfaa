/**
 * The built-in policy, as the YAML an admin would write. It is the single source of default
 * values (load.ts parses it like any other file), so what `countersign config` prints is
 * exactly what runs when no policy file is given.
 *
 * How the default numbers were chosen (see also the comments in the YAML):
 * - Factor weights: severity 0.45 dominates on purpose — the action itself is the best-known
 *   signal; target criticality and confidence 0.15 each; reversibility 0.10; scope, history
 *   and urgency 0.05 each (often unstated, so they read neutral and must not swing much).
 * - With every unstated factor neutral, a reversible action at full confidence scores
 *   0.1225 + 0.45·weight. The `high` threshold 0.43 therefore makes weight ≥ 0.7 (isolate a
 *   host, disable a user) high risk on its own, while block_ip (0.5) stays medium and can run
 *   automatically when the agent is sure.
 * - `critical` 0.80 is reached only by a combination — e.g. a destructive irreversible action
 *   on a critical target with low confidence — so that "critical" keeps meaning "a senior
 *   human with MFA". delete_data on a critical path at confidence 0.75 scores 0.755: high.
 * - `medium` 0.25 keeps alerts and log collection low.
 */
export const DEFAULT_POLICY_YAML = `# Countersign policy (countersign.yaml)
#
# This is the built-in default. A policy file is merged over it: write only what you change.
# Mappings merge key by key; lists replace the default list, except \`rules\`, which merge by
# rule name (a rule with a default rule's name replaces it; \`enabled: false\` turns it off).
# Unknown keys are errors (a typo must not silently disable a rule), except under \`channels\`.
# Durations: 30s, 15m, 2h, 7d.

# Risk weight 0-1 and traits per action. Unknown actions get defaultWeight.
# reversible: can the effect be undone? (irreversible adds risk; unknown is neutral)
# category: containment, notification and investigation are "protective": when the situation is
# urgent (context.threatScore / timeSensitivity), urgency lowers the risk of a reversible
# protective action, because acting late costs more than acting and undoing.
# args (optional): rules for the action's arguments, checked when an agent proposes it and when a
# reviewer modifies it, e.g. args: { host: { type: string, required: true, pattern: "^[a-z0-9-]+$" },
# minutes: { type: integer, minimum: 1, maximum: 1440 } } (types: string, number, integer, boolean,
# object, array; also enum, maxLength); strictArgs: true refuses arguments not listed.
actions:
  defaultWeight: 0.5
  send_alert:          { weight: 0.1,  category: notification }
  collect_logs:        { weight: 0.2,  reversible: true,  category: investigation }
  send_external_email: { weight: 0.4,  reversible: false, category: communication }
  revoke_session:      { weight: 0.45, reversible: true,  category: containment }
  block_ip:            { weight: 0.5,  reversible: true,  category: containment }
  quarantine_file:     { weight: 0.55, reversible: true,  category: containment }
  kill_process:        { weight: 0.6,  reversible: false, category: containment }
  reset_password:      { weight: 0.6,  reversible: false, category: identity }
  isolate_host:        { weight: 0.7,  reversible: true,  category: containment }
  disable_user:        { weight: 0.75, reversible: true,  category: containment }
  execute_code:        { weight: 0.8,  reversible: false, category: execution }
  wire_transfer:       { weight: 0.8,  reversible: false, category: financial }
  delete_file:         { weight: 0.85, reversible: false, category: destructive }
  delete_data:         { weight: 0.9,  reversible: false, category: destructive }
  drop_table:          { weight: 0.95, reversible: false, category: destructive }

# Confidence bands: at or above full -> full, at or above supervised -> supervised, at or above
# advisory -> advisory, below -> manual. A request without a confidence counts as 0.5.
# Risk caps the band: high risk is at most advisory, critical risk is always manual.
# full and supervised run without a human (supervised is shown in the post-hoc review feed).
automation:
  full: 0.95
  supervised: 0.80
  advisory: 0.60

# Per risk level: review deadline before escalation (sla), whether full/supervised automation
# may approve on its own (autoApprove; only low and medium can), step-up MFA for approvers,
# and how many distinct approvals are needed (approvals, default 1).
# approvers: [{ role | group | operator }] makes each approver its own stage, in order.
# deny: rejections that decide at once (default 1). modifiedNeedsSecondReviewer: true makes
# modified args (or an alternative) need one more approval, from someone other than the modifier.
# startLevel: the escalation level reviews at this risk level start at (e.g. critical: 2).
# notify: channels told of every review at this risk level, besides its escalation level's.
levels:
  low:      { sla: 60m, autoApprove: true }
  medium:   { sla: 30m, autoApprove: true }
  high:     { sla: 15m, autoApprove: false }
  critical: { sla: 5m,  autoApprove: false, mfa: true, approvals: 2 }

# Score (0-1) at which each risk level starts.
riskThresholds:
  medium: 0.25
  high: 0.43
  critical: 0.80

# Relative weights of the risk factors (normalised to sum to 1).
riskFactors:
  severity: 0.45          # the action's weight above
  targetCriticality: 0.15 # targets below, or context.target.criticality
  confidence: 0.15        # 1 - confidence
  reversibility: 0.10     # irreversible 1, unknown 0.5, reversible 0
  impactScope: 0.05       # context.blastRadius: count or single..global
  history: 0.05           # this agent's past outcomes for this action
  timeSensitivity: 0.05   # urgency; lowers risk of reversible protective steps only

# Criticality of what an action touches. Globs (case-insensitive): * within a path segment,
# ** across segments. Matched against context.target (string, name, id) and args such as
# path, file, host, hostname, server, database, table, bucket, account, user, ip, target.
# The highest match wins. This list replaces the default when you set it.
targets:
  - { match: "/important/**", criticality: critical }
  - { match: "/etc/**",       criticality: high }
  - { match: "/boot/**",      criticality: critical }
  - { match: "prod-*",        criticality: high }
  - { match: "*-prod",        criticality: high }
  - { match: "prod.*",        criticality: high }
  - { match: "*.prod.*",      criticality: high }
  - { match: "dc-*",          criticality: critical }  # domain controllers
  - { match: "root",          criticality: critical }
  - { match: "administrator", criticality: critical }

# Actions that always need a human, whatever the score (an implicit rule "require-approval").
requireApproval: []

# Keywords that make an action need a human (an implicit rule "dangerous-action"). An action
# name is split into segments on _ . : - and camelCase; a keyword matches whole segments, so
# "delete" matches delete_data and bulkDelete but not undelete.
dangerousActions: [delete, drop, remove, destroy, truncate, wipe, purge, revoke]

# Rules, evaluated in order; every match is reported by name. All conditions under \`when\`
# must hold: action, actionMatches, agent, contentPattern (one of), valueAtLeast
# (context.value), riskAtLeast, confidenceBelow, outside / within { days, hours, timeZone }.
# Effects under \`then\` only tighten: review, block, riskAtLeast, approvers (in sequence),
# approvals (quorum), mfa, startLevel (escalation level to start at, 1 = first).
# Every effect except riskAtLeast sends the request to a human.
# Built-in content patterns: credit_card (Luhn-checked), us_ssn, secret, email, ip_address.
rules:
  - name: card-numbers
    description: payment card numbers in the request
    when: { contentPattern: credit_card }
    then: { review: true, riskAtLeast: high }
  - name: us-ssn
    description: US social security numbers in the request
    when: { contentPattern: us_ssn }
    then: { review: true, riskAtLeast: high }
  - name: secrets
    description: credentials or keys in the request
    when: { contentPattern: secret }
    then: { review: true, riskAtLeast: high }
  - name: large-value
    description: amounts from 10,000 need a manager
    when: { valueAtLeast: 10000 }
    then: { approvers: [{ role: manager }] }
  - name: very-large-value
    description: amounts from 50,000 need a manager, then a director
    when: { valueAtLeast: 50000 }
    then: { approvers: [{ role: manager }, { role: director }] }
  # Example (not active): no code execution outside London business hours.
  # - name: no-code-after-hours
  #   when: { action: execute_code, outside: { days: mon-fri, hours: "09:00-17:00", timeZone: Europe/London } }
  #   then: { block: true }

# Content patterns of your own, by name: a regex, or { regex, flags } (flags: i m s u v).
contentPatterns: {}

# Who is asked, in order, while nobody decides. A queued request starts at level 1 (or a rule's
# or its risk level's startLevel), whose notify channels are told; after: how long it waits at
# that level (\`sla\` = its risk level's SLA) before moving to the next, whose channels are told.
# notify: channel names configured under \`channels\`. A level names a role, operators: [ids or
# names] and/or groups: [names]: they are told, and sign only what the approval stages let them.
# The last level may say finalAuthority: true (it must name operators or groups): once a request
# has escalated into it, any one of them may decide it alone (every other check still applies).
# At the end of the chain the request expires as rejected, unless onFinalTimeout: approve.
escalation:
  levels:
    - { role: lead,     after: sla, notify: [] }
    - { role: manager,  after: 10m, notify: [] }
    - { role: director, after: 10m, notify: [] }
  onFinalTimeout: reject

# Per-agent overrides, by agent name:
#   billing-bot: { requireApproval: [send_external_email], block: [wire_transfer],
#                  minConfidence: 0.7, limits: { perMinute: 60, perHour: 1000 },
#                  onSlicing: pause,    # slicing alerts about it: alert (audit and notice), pause it, review
#                                       # (its requests need a human) or aggregate (its requests are reviewed
#                                       # together, as one), each for guard.slicing.hold
#                  whilePaused: hold,   # overrides guard.whilePaused for this agent
#                  enabled: true,       # false refuses every request from this agent (AGENT_DISABLED)
#                  levels: { medium: { autoApprove: false, sla: 10m, mfa: true } },  # over levels.<risk>
#                  velocity: { perHour: 5 }, cooldown: { threshold: 3 },  # approvers of its requests, over guard.*
#                  slicing: { hold: 2h } }                                # over guard.slicing
# The same keys can be set per agent through the API (PUT /v1/agents/:name/config), over these.
agents: {}

# Notification channel settings (webhook, slack, email, teams, pagerduty); secrets from env.
channels: {}

# Protecting reviewers. notify: channels (names under \`channels\`, any type) told of
# every slicing alert, agent pause/resume and approver cool-down. velocity: an approver's
# approvals of these risk levels per hour and per day. cooldown: threshold approvals within
# window start a cool-down of duration, during which that approver may not approve these levels.
# slicing: how long a slicing response (pause, review, aggregate) lasts, and how long an
# aggregate review collects an agent's requests before it is put together. whilePaused: a paused
# agent's new requests are refused (AGENT_PAUSED) or held for review (approvable after the pause).
# agentLimits: every agent's create limit unless agents.<name>.limits sets its own (RATE_LIMITED).
guard:
  notify: []
  velocity: { perHour: 10, perDay: 50, riskLevels: [high, critical] }
  cooldown: { threshold: 5, window: 15m, duration: 30m, riskLevels: [high, critical] }
  slicing: { hold: 1h, collect: 1m }
  whilePaused: refuse
  agentLimits: { perMinute: 600 }

auditRetentionDays: 365

# Four-eyes on admin power. A change through the API that loosens the gate (an agent config that
# enables an agent, raises a limit, removes a required approval, auto-approves more, ...) is itself
# a request (countersign.agent_config) that another admin must approve. singleAdmin: true lets one
# admin's change apply at once; write it only where there is one admin.
admin:
  singleAdmin: false
`;
