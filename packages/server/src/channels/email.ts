/**
 * Email over SMTP (nodemailer; the server URL with its credentials is a secret from the
 * environment). A text and an HTML part carry the same content; agent text is boxed under the
 * agent-supplied label: HTML-escaped in the HTML part, every line prefixed in the text part. Links open the dashboard's review page with the choice
 * preselected: a link never decides, because mail scanners fetch every link they see.
 * `Message-ID` is the delivery id (stable across retries); `References` names the request, so
 * mail clients thread every message about one request. Guard notices (`sendGuard`) use the same
 * layout: facts, the reason escaped, slicing alert descriptions in the agent-supplied box.
 */
import nodemailer, { type Transporter } from 'nodemailer';
import { AGENT_SUPPLIED_LABEL, type GuardNotice, type Notification } from '@countersign/core';
import type { EmailConfig } from './config.ts';
import { actionLabel, agentFacts, agentReason, boxedLines, decisionText, escapeHtml, facts, guardAgentFacts, guardFacts, oneLine } from './format.ts';
import { DeliveryError, type Channel, type ChannelDelivery, type GuardDelivery } from './types.ts';

const row = ([k, v]: [string, string]) => `<tr><th align="left" style="padding:2px 12px 2px 0">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;

/**
 * Agent text in the text part: fenced, labelled, and every line inside prefixed, so agent text
 * cannot end its own box (the HTML part escapes instead).
 */
const agentText = (pairs: Array<[string, string]>) => [`--- ${AGENT_SUPPLIED_LABEL} ---`, ...boxedLines(pairs), '--- end of agent-supplied text ---'];

/** System label/value pairs in the text part: one line each (values may still hold names or reasons). */
const factLines = (pairs: Array<[string, string]>) => pairs.map(([k, v]) => `${oneLine(k)}: ${oneLine(v)}`);

/** Agent text in the HTML part: escaped, in a dashed box under the label. */
const agentBox = (pairs: Array<[string, string]>) => `<div style="margin:12px 0;padding:8px 12px;border:2px dashed #bf8700;background:#fff8c5">
<p style="margin:0 0 6px"><strong>⚠ ${escapeHtml(AGENT_SUPPLIED_LABEL)}</strong></p>
<table>${pairs.map(row).join('')}</table>
</div>`;

export function emailContent(n: Notification, subjectPrefix: string) {
  // Outside the box, everything is one line per item, and an agent's own reason (it cancelled)
  // goes in the box: outside, it could still read as Countersign's own text (review D7).
  const decided = decisionText(n, { agentReason: false });
  const boxed = [...agentFacts(n), ...agentReason(n)];
  const text = [
    oneLine(n.title),
    ...(n.detail ? [oneLine(n.detail)] : []),
    ...(decided ? [`Decision: ${oneLine(decided)}`] : []),
    '',
    ...factLines(facts(n)),
    '',
    ...agentText(boxed),
    '',
    ...(n.actions.length > 0 ? ['Decide in Countersign (each link opens the review page; nothing is decided until you confirm there):', ...n.actions.map((a) => `  ${oneLine(actionLabel(a))}: ${a.url}`)] : []),
    `Review: ${n.reviewUrl}`,
  ].join('\n');
  const button = (a: Notification['actions'][number]) =>
    `<a href="${escapeHtml(a.url)}" style="display:inline-block;margin:0 8px 8px 0;padding:8px 14px;border-radius:4px;text-decoration:none;color:#fff;background:${a.style === 'primary' ? '#1a7f37' : a.style === 'danger' ? '#cf222e' : '#57606a'}">${escapeHtml(actionLabel(a))}</a>`;
  const html = `<!doctype html><html><body style="font-family:sans-serif">
<h2>${escapeHtml(n.title)}</h2>
${n.detail ? `<p>${escapeHtml(n.detail)}</p>` : ''}
${decided ? `<p><strong>Decision:</strong> ${escapeHtml(decided)}</p>` : ''}
<table>${facts(n).map(row).join('')}</table>
${agentBox(boxed)}
${n.actions.length > 0 ? `<p>${n.actions.map(button).join('')}</p><p style="color:#57606a;font-size:12px">Each button opens the review page in Countersign; nothing is decided until you confirm there.</p>` : ''}
<p><a href="${escapeHtml(n.reviewUrl)}">Open in Countersign</a></p>
</body></html>`;
  return { subject: oneLine(`${subjectPrefix} ${n.title}`).slice(0, 200), text, html };
}

/**
 * A guard notice: the facts, the reason (an operator's free text: escaped, never markup) and,
 * for a slicing alert, the alert descriptions in the agent-supplied box. One link, to the dashboard.
 */
export function emailGuardContent(n: GuardNotice, subjectPrefix: string) {
  const alerts = guardAgentFacts(n);
  const text = [
    oneLine(n.title),
    '',
    ...factLines(guardFacts(n)),
    ...(n.reason !== null ? [`Reason: ${oneLine(n.reason)}`] : []),
    ...(alerts.length > 0 ? ['', ...agentText(alerts)] : []),
    '',
    `Countersign: ${n.url}`,
  ].join('\n');
  const html = `<!doctype html><html><body style="font-family:sans-serif">
<h2>${escapeHtml(n.title)}</h2>
<table>${guardFacts(n).map(row).join('')}${n.reason !== null ? row(['Reason', n.reason]) : ''}</table>
${alerts.length > 0 ? agentBox(alerts) : ''}
<p><a href="${escapeHtml(n.url)}">Open in Countersign</a></p>
</body></html>`;
  return { subject: oneLine(`${subjectPrefix} ${n.title}`).slice(0, 200), text, html };
}

/** `smtp://user:pass@host:587` or `smtps://…:465` → nodemailer's SMTP options, with our timeouts. */
export function smtpOptions(url: string, timeoutMs: number) {
  const u = new URL(url);
  const secure = u.protocol === 'smtps:';
  return {
    host: u.hostname,
    port: u.port ? Number(u.port) : secure ? 465 : 587,
    secure,
    ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  };
}

export function emailChannel(config: EmailConfig): Channel {
  const { from, to, smtpUrl, subjectPrefix } = config.settings;
  let transport: Transporter | undefined;
  const transporter = () => (transport ??= nodemailer.createTransport(smtpOptions(smtpUrl, config.timeoutMs)));
  /** Sends one message (Message-ID: the delivery id), abandoning it at `signal`; SMTP failures become DeliveryErrors. */
  const mail = async (id: string, message: { subject: string; text: string; html: string; references: string; headers: Record<string, string> }, signal: AbortSignal) => {
    const sending = transporter().sendMail({
      from,
      to,
      ...message,
      messageId: `<${id}@countersign>`,
      headers: { ...message.headers, 'Auto-Submitted': 'auto-generated' },
    });
    const aborted = new Promise<never>((_, reject) => {
      const fail = () => reject(new DeliveryError(`email ${config.name}: timed out`, true));
      if (signal.aborted) fail();
      signal.addEventListener('abort', fail, { once: true });
    });
    try {
      const info = await Promise.race([sending, aborted]);
      return { messageId: info.messageId, accepted: (info.accepted ?? []).map(String) };
    } catch (err) {
      if (err instanceof DeliveryError) throw err;
      const e = err as { responseCode?: number; code?: string; message?: string };
      // SMTP 5xx is permanent (no such mailbox, relaying denied); 4xx and connection trouble are not.
      const permanent = typeof e.responseCode === 'number' && e.responseCode >= 500;
      throw new DeliveryError(`email ${config.name}: ${e.message ?? String(err)}`, !permanent);
    }
  };
  return {
    name: config.name,
    type: 'email',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const n = delivery.notification;
      return mail(
        delivery.id,
        { ...emailContent(n, subjectPrefix), references: `<${n.requestId}@countersign>`, headers: { 'X-Countersign-Request': n.requestId, 'X-Countersign-Event': n.event } },
        signal,
      );
    },
    /** Threaded per agent (pause, resume, alerts) or per approver (cool-downs) through `References`. */
    async sendGuard(delivery: GuardDelivery, signal: AbortSignal) {
      const n = delivery.notice;
      // Operator names may hold '@', which a Message-ID's left part cannot: percent-encode.
      const about = encodeURIComponent(n.agent !== null ? `agent.${n.agent}` : `operator.${n.operator ?? 'unknown'}`);
      return mail(
        delivery.id,
        { ...emailGuardContent(n, subjectPrefix), references: `<guard.${about}@countersign>`, headers: { 'X-Countersign-Event': `guard.${n.kind}` } },
        signal,
      );
    },
    async close() {
      transport?.close();
    },
  };
}
