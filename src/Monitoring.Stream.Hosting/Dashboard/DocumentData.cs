namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Document processing over the window.</summary>
/// <param name="Count">Documents processed.</param>
/// <param name="DurationSeconds">Processing time of every document.</param>
/// <param name="ByTypeAndStatus">Per type and status.</param>
public sealed record DocumentData(long Count, StatSummary? DurationSeconds, IReadOnlyList<DocumentTypeData> ByTypeAndStatus);
