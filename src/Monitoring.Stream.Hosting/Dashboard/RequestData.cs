namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>HTTP requests over the window.</summary>
/// <param name="Count">Requests served.</param>
/// <param name="RatePerSecond">Requests per second over the window.</param>
/// <param name="LatencySeconds">Duration of every request.</param>
/// <param name="ByStatusCode">Requests per status code.</param>
/// <param name="Routes">Per method and route template.</param>
public sealed record RequestData(long Count, double RatePerSecond, StatSummary? LatencySeconds, IReadOnlyDictionary<string, long> ByStatusCode, IReadOnlyList<RouteData> Routes);
