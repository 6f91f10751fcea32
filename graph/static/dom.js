// Building DOM from data that crawlers wrote: text only ever goes in through textContent and
// attributes through setAttribute, never through innerHTML.
const SVG = "http://www.w3.org/2000/svg";

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  return fill(node, attributes, children);
}

export function svg(tag, attributes = {}, ...children) {
  return fill(document.createElementNS(SVG, tag), attributes, children);
}

function fill(node, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function text(id, value) {
  document.getElementById(id).textContent = value;
}

// A link to something a crawler named: only http(s), else nothing.
export function safeUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

const numbers = new Intl.NumberFormat("en-US");
export const formatNumber = (n) => numbers.format(n);

// "2026-11-25 21:19 UTC" from an ISO-8601 UTC timestamp.
export function formatTime(iso) {
  return iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "never";
}
