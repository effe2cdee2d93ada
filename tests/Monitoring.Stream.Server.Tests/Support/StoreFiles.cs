using Apache.Arrow;
using Apache.Arrow.Ipc;

namespace Monitoring.Stream.Server.Tests.Support;

/// <summary>Reads the service's local Arrow store folder as a downstream user would: published files only.</summary>
internal static class StoreFiles
{
    /// <summary>Count and sum of <paramref name="metric"/> over every published Arrow file of the store folder.</summary>
    public static async Task<(long Count, double Sum)> ReadAsync(string directory, string metric)
    {
        long count = 0;
        double sum = 0;
        foreach (string file in Directory.GetFiles(directory, "*.arrow"))
        {
            using FileStream stream = File.OpenRead(file);
            using var reader = new ArrowFileReader(stream);
            int batches = await reader.RecordBatchCountAsync();
            for (int i = 0; i < batches; i++)
            {
                using RecordBatch batch = await reader.ReadRecordBatchAsync(i, CancellationToken.None);
                var metrics = (StringArray)batch.Column("metric");
                var counts = (Int64Array)batch.Column("count");
                var sums = (DoubleArray)batch.Column("sum");
                for (int row = 0; row < batch.Length; row++)
                {
                    if (metrics.GetString(row) == metric)
                    {
                        count += counts.GetValue(row)!.Value;
                        sum += sums.GetValue(row)!.Value;
                    }
                }
            }
        }

        return (count, sum);
    }
}
