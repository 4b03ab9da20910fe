// Drives kokoma end to end through the TypeScript client that @hey-api/openapi-ts generates from
// openapi/openapi.json (ts-check/generated/hey; see tests/live/test_generated_clients.py).
// Type-checked with strict tsc (tsconfig.json); run with tsx. No casts, no hand-set
// Authorization header: the client's `auth` option supplies the API key to every operation the
// document marks with the bearer scheme.
//
// Usage: tsx src/driver.ts BASE_URL ADMIN_KEY
import { createClient, createConfig } from "../generated/hey/client";
import {
  apiKeysCreate,
  assignmentsAccept,
  assignmentsCreate,
  dispatchCandidates,
  incidentsCreate,
  incidentsList,
  incidentsSetStatus,
  managersCreate,
} from "../generated/hey/sdk.gen";
import type { IncidentPublic } from "../generated/hey/types.gen";

declare const process: { argv: string[]; exitCode?: number };

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

async function main(baseUrl: string, adminKey: string): Promise<void> {
  const run = Math.random().toString(16).slice(2, 10);
  const admin = createClient(createConfig({ baseUrl, auth: () => adminKey }));

  // 1. register an incident
  const { data: created } = await incidentsCreate({
    client: admin,
    throwOnError: true,
    body: {
      title: `Threats at the youth club (${run})`,
      district: "alpha",
      category: "right_wing_extremism",
      escalation_level: 3,
      required_competences: ["mediation"],
      languages: ["de"],
    },
  });
  console.log("created", created.reference);

  // 2. triage it
  const { data: triaged } = await incidentsSetStatus({
    client: admin,
    throwOnError: true,
    path: { incident_id: created.id },
    body: { status: "triaged" },
  });
  check(triaged.status === "triaged", `status is ${triaged.status}`);

  // 3. a filtered list: typed items
  const { data: page } = await incidentsList({
    client: admin,
    throwOnError: true,
    query: { status: ["triaged"], district: "alpha", q: run, limit: 10 },
  });
  const items: IncidentPublic[] = page.items;
  check(
    items.length === 1 && items.every((item) => item.reference === created.reference),
    `listed ${items.map((item) => item.reference).join(", ")}`,
  );

  // 4. a manager who fits, and the candidates
  const { data: manager } = await managersCreate({
    client: admin,
    throwOnError: true,
    body: {
      display_name: `Mara Beispiel ${run}`,
      email: `mara-${run}@example.org`,
      home_district: "alpha",
      status: "active",
      languages: ["de"],
      competences: [{ code: "mediation", certified_on: "2025-01-01" }],
    },
  });
  const { data: candidates } = await dispatchCandidates({
    client: admin,
    throwOnError: true,
    path: { incident_id: created.id },
    query: { limit: 50 },
  });
  check(
    candidates.candidates.some((candidate) => candidate.manager_id === manager.id),
    "the new manager is not among the candidates",
  );

  // 5. offer the lead slot to that manager
  const { data: offer } = await assignmentsCreate({
    client: admin,
    throwOnError: true,
    body: { incident_id: created.id, manager_id: manager.id, role: "lead" },
  });

  // 6. the manager accepts, with a key of their own
  const { data: key } = await apiKeysCreate({
    client: admin,
    throwOnError: true,
    body: { name: `manager ${run}`, role: "manager", manager_id: manager.id },
  });
  const asManager = createClient(createConfig({ baseUrl, auth: () => key.key }));
  const { data: accepted } = await assignmentsAccept({
    client: asManager,
    throwOnError: true,
    path: { assignment_id: offer.id },
  });
  check(accepted.status === "accepted", `assignment is ${accepted.status}`);

  // 7. the CSV export: the list operation's text/csv form, through the same client and auth
  const { data: csv } = await admin.get<{ 200: string }, unknown, true>({
    url: "/api/v1/incidents",
    security: [{ scheme: "bearer", type: "http" }],
    query: { q: run },
    headers: { Accept: "text/csv" },
    parseAs: "text",
    throwOnError: true,
  });
  const lines = csv.trim().split(/\r?\n/);
  check(lines.length === 2 && (lines[1] ?? "").includes(created.reference), `CSV: ${csv}`);
  console.log("exported", lines.length - 1, "incident(s) as CSV");
  console.log("typescript client: ok");
}

const [baseUrl, adminKey] = process.argv.slice(2);
if (baseUrl === undefined || adminKey === undefined) {
  throw new Error("usage: tsx src/driver.ts BASE_URL ADMIN_KEY");
}
main(baseUrl, adminKey).catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
