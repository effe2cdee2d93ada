namespace Monitoring.Stream.Server;

/// <summary>Options of the demo command.</summary>
internal sealed record DemoOptions(long Points, int Series, int Producers, string DataDirectory, int LatePerMillion, int MaxFileMegabytes = 64, Uri? RemoteWriteUrl = null, bool ResolveLabels = false);
