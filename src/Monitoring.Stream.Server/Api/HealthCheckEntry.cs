namespace Monitoring.Stream.Server.Api;

/// <summary>One health check's result (never an exception's detail).</summary>
/// <param name="Name">The check.</param>
/// <param name="Status">Healthy, Degraded or Unhealthy.</param>
/// <param name="Description">What the check found.</param>
internal sealed record HealthCheckEntry(string Name, string Status, string? Description);
