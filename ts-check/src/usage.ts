// What a frontend writes against the generated types. Each `@ts-expect-error` line MUST be a type
// error: it proves that enums are closed unions and that nullable fields are `T | null` (present,
// not optional), so the spec is precise enough to build a client on.
import type { components, operations, paths } from "../generated/kokoma-api";
import { incidentStatusValues } from "../generated/kokoma-api";

type Schemas = components["schemas"];
type IncidentPublic = Schemas["IncidentPublic"];
type IncidentStatus = Schemas["IncidentStatus"];
type IncidentCategory = Schemas["IncidentCategory"];
type Problem = Schemas["Problem"];
type ManagerPublic = Schemas["ManagerPublic"];

// A redacted incident: the reporter is present and null.
export const redacted: IncidentPublic = {
  id: "0b9c2d4e-0000-4000-8000-000000000001",
  reference: "KOK-2026-00042",
  title: "Threatening graffiti at the community centre",
  description: "",
  district: "herrenberg",
  location: null,
  category: "threat_to_civil_society",
  escalation_level: 4,
  required_competences: ["right_wing_extremism"],
  languages: ["de"],
  status: "triaged",
  occurred_at: null,
  reported_at: "2026-06-15T10:00:00Z",
  source: "web",
  external_id: null,
  organisation_id: null,
  reporter: null,
  version: 2,
  created_at: "2026-06-15T10:00:00Z",
  updated_at: "2026-06-15T10:05:00Z",
};

// @ts-expect-error — `reporter` is nullable but not optional: a client can rely on the key.
export const missingReporter: IncidentPublic = { ...redacted, reporter: undefined };

export const open: IncidentStatus[] = ["reported", "triaged", "dispatched", "in_progress"];
// @ts-expect-error — statuses are a closed union.
export const bogusStatus: IncidentStatus = "archived";
// @ts-expect-error — categories too.
export const bogusCategory: IncidentCategory = "vandalism";

// Enum values are exported as arrays (--enum-values) for select boxes.
export const allStatuses: readonly IncidentStatus[] = incidentStatusValues;
export function isOpen(status: IncidentStatus): boolean {
  return open.includes(status);
}

export function reporterLabel(incident: IncidentPublic): string {
  // Narrowing on null is required by the type: without it, `.name` does not compile.
  return incident.reporter === null ? "(hidden)" : (incident.reporter.name ?? "anonymous");
}

// Problems: errors carry loc/msg/type.
export function firstErrorField(problem: Problem): string {
  const first = problem.errors?.[0];
  return first ? first.loc.join(".") + ": " + first.msg : problem.detail;
}

// Hidden manager contact data is null, not absent.
export function contact(manager: ManagerPublic): string {
  return manager.email ?? manager.phone ?? "(contact hidden)";
}

// Operations: the list response is a page of incidents, and its query is typed.
type ListIncidents = operations["incidents_list"];
export type IncidentPage =
  ListIncidents["responses"][200]["content"]["application/json"];
export const page: IncidentPage = { items: [redacted], next_cursor: null };
export const query: NonNullable<ListIncidents["parameters"]["query"]> = {
  status: ["reported", "triaged"],
  min_escalation: 4,
};
// @ts-expect-error — unknown filters are refused at compile time.
export const badQuery: NonNullable<ListIncidents["parameters"]["query"]> = { colour: "red" };

// Paths are typed too.
export type GetIncident = paths["/api/v1/incidents/{incident_id}"]["get"];
export type Unauthorized =
  GetIncident["responses"][401]["content"]["application/problem+json"];
export const unauthorized: Unauthorized = {
  type: "/problems/unauthorized",
  title: "Authentication required",
  status: 401,
  detail: "Send an API key as 'Authorization: Bearer <key>'.",
  instance: "/api/v1/incidents/0b9c2d4e-0000-4000-8000-000000000001",
};

// A request body: fields with defaults are optional for the client.
export const create: Schemas["IncidentCreate"] = {
  title: "Stickers at the youth club",
  district: "alpha",
  category: "right_wing_extremism",
  escalation_level: 3,
};
