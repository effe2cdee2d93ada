namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>One health check's result.</summary>
/// <param name="Name">The check's registered name.</param>
/// <param name="Status"><c>Healthy</c>, <c>Degraded</c> or <c>Unhealthy</c>.</param>
/// <param name="Description">What the check said.</param>
/// <param name="Error">The exception message of a check that threw or timed out.</param>
/// <param name="DurationMs">How long the check took.</param>
public sealed record HealthCheckData(string Name, string Status, string? Description, string? Error, double DurationMs);
