/**
 * Email over SMTP (nodemailer; the server URL with its credentials is a secret from the
 * environment). A text and an HTML part carry the same content; agent text is HTML-escaped and
 * boxed under the agent-supplied label. Links open the dashboard's review page with the choice
 * preselected: a link never decides, because mail scanners fetch every link they see.
 * `Message-ID` is the delivery id (stable across retries); `References` names the request, so
 * mail clients thread every message about one request.
 */
import nodemailer, { type Transporter } from 'nodemailer';
import { AGENT_SUPPLIED_LABEL, type Notification } from '@countersign/core';
import type { EmailConfig } from './config.ts';
import { actionLabel, agentFacts, decisionText, escapeHtml, facts, oneLine, stripInvisible } from './format.ts';
import { DeliveryError, type Channel, type ChannelDelivery } from './types.ts';

export function emailContent(n: Notification, subjectPrefix: string) {
  const decided = decisionText(n);
  const text = [
    n.title,
    ...(n.detail ? [n.detail] : []),
    ...(decided ? [`Decision: ${decided}`] : []),
    '',
    ...facts(n).map(([k, v]) => `${k}: ${v}`),
    '',
    `--- ${AGENT_SUPPLIED_LABEL} ---`,
    ...agentFacts(n).map(([k, v]) => `${k}: ${stripInvisible(v)}`),
    '--- end of agent-supplied text ---',
    '',
    ...(n.actions.length > 0 ? ['Decide in Countersign (each link opens the review page; nothing is decided until you confirm there):', ...n.actions.map((a) => `  ${actionLabel(a)}: ${a.url}`)] : []),
    `Review: ${n.reviewUrl}`,
  ].join('\n');
  const row = ([k, v]: [string, string]) => `<tr><th align="left" style="padding:2px 12px 2px 0">${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const button = (a: Notification['actions'][number]) =>
    `<a href="${escapeHtml(a.url)}" style="display:inline-block;margin:0 8px 8px 0;padding:8px 14px;border-radius:4px;text-decoration:none;color:#fff;background:${a.style === 'primary' ? '#1a7f37' : a.style === 'danger' ? '#cf222e' : '#57606a'}">${escapeHtml(actionLabel(a))}</a>`;
  const html = `<!doctype html><html><body style="font-family:sans-serif">
<h2>${escapeHtml(n.title)}</h2>
${n.detail ? `<p>${escapeHtml(n.detail)}</p>` : ''}
${decided ? `<p><strong>Decision:</strong> ${escapeHtml(decided)}</p>` : ''}
<table>${facts(n).map(row).join('')}</table>
<div style="margin:12px 0;padding:8px 12px;border:2px dashed #bf8700;background:#fff8c5">
<p style="margin:0 0 6px"><strong>⚠ ${escapeHtml(AGENT_SUPPLIED_LABEL)}</strong></p>
<table>${agentFacts(n).map(row).join('')}</table>
</div>
${n.actions.length > 0 ? `<p>${n.actions.map(button).join('')}</p><p style="color:#57606a;font-size:12px">Each button opens the review page in Countersign; nothing is decided until you confirm there.</p>` : ''}
<p><a href="${escapeHtml(n.reviewUrl)}">Open in Countersign</a></p>
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
  return {
    name: config.name,
    type: 'email',
    async send(delivery: ChannelDelivery, signal: AbortSignal) {
      const n = delivery.notification;
      const { subject, text, html } = emailContent(n, subjectPrefix);
      const sending = transporter().sendMail({
        from,
        to,
        subject,
        text,
        html,
        messageId: `<${delivery.id}@countersign>`,
        references: `<${n.requestId}@countersign>`,
        headers: { 'X-Countersign-Request': n.requestId, 'X-Countersign-Event': n.event, 'Auto-Submitted': 'auto-generated' },
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
    },
    async close() {
      transport?.close();
    },
  };
}
