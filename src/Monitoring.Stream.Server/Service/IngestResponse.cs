namespace Monitoring.Stream.Server.Service;

/// <summary>The answer to an ingest request.</summary>
/// <param name="Accepted">Points the engine accepted.</param>
/// <param name="Rejected">Points the engine refused.</param>
/// <param name="RejectedByReason">Refused points by reason (the engine's reason labels, e.g. <c>not_a_number</c>).</param>
internal sealed record IngestResponse(int Accepted, int Rejected, IReadOnlyDictionary<string, int> RejectedByReason);
