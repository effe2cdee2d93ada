namespace Monitoring.Stream.Store;

/// <summary>A file of the store folder that was found damaged and moved aside instead of being read as data.</summary>
/// <param name="OriginalPath">Where the file was.</param>
/// <param name="Path">Where it is now (in the store's <c>damaged</c> folder).</param>
/// <param name="Reason">What the check found wrong with it.</param>
public sealed record SetAsideFile(string OriginalPath, string Path, string Reason);
