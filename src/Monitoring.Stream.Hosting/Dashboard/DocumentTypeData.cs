namespace Monitoring.Stream.Hosting.Dashboard;

/// <summary>Documents of one type and status over the window.</summary>
/// <param name="Type">The document type.</param>
/// <param name="Status">How processing ended.</param>
/// <param name="Count">Documents.</param>
/// <param name="DurationSeconds">Processing time.</param>
/// <param name="SizeBytes">Document size.</param>
public sealed record DocumentTypeData(string Type, string Status, long Count, StatSummary? DurationSeconds, StatSummary? SizeBytes);
