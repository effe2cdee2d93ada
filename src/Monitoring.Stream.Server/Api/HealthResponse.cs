namespace Monitoring.Stream.Server.Api;

/// <summary>The answer of the health endpoints.</summary>
/// <param name="Status">Healthy, Degraded or Unhealthy.</param>
/// <param name="Checks">Each check that ran.</param>
internal sealed record HealthResponse(string Status, IReadOnlyList<HealthCheckEntry> Checks);
