using Monitoring.Stream.Sinks;
using Monitoring.Stream.Store;
using Monitoring.Stream.Tests.Sinks;
using Monitoring.Stream.Tests.Support;

namespace Monitoring.Stream.Tests.Store;

/// <summary>The sink contract over the recent-window store, read back through its queries.</summary>
public sealed class RecentWindowStoreContractTests : WindowSinkContractTests
{
    protected override ValueTask<IWindowSink> CreateSinkAsync()
    {
        // The clock stands just after the sample windows, so a query of one hour sees all of them.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(
            DateTimeOffset.FromUnixTimeMilliseconds(WindowBatchFactory.T0 + (10 * WindowBatchFactory.WindowMs)));
        return ValueTask.FromResult<IWindowSink>(new RecentWindowStore(new RecentWindowStoreOptions { TimeProvider = time }));
    }

    protected override Task<IReadOnlyDictionary<string, long>> ReadCountsAsync(IWindowSink sink, IReadOnlyList<WindowBatch> written)
    {
        var store = (RecentWindowStore)sink;
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (WindowRow row in written.SelectMany(b => CollectingSink.Read(b.RecordBatch, b.Shard)))
        {
            SeriesStatistics? stats = store.Query(row.Metric, row.Labels, TimeSpan.FromHours(1));
            if (stats is not null)
            {
                counts[row.Key] = stats.Moments.Count;
            }
        }

        return Task.FromResult<IReadOnlyDictionary<string, long>>(counts);
    }
}
