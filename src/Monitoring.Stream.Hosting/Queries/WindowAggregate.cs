using Monitoring.Stream.Statistics;

namespace Monitoring.Stream.Hosting.Queries;

/// <summary>One series' aggregate of one window, as emitted by the engine.</summary>
internal sealed record WindowAggregate(long StartUnixMs, long EndUnixMs, RunningMoments Moments, DdSketch? Sketch);
