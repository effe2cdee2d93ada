using System.Text;
using System.Text.Json;
using Monitoring.Stream.Model;

namespace Monitoring.Stream.Server.Service;

/// <summary>
/// The JSON form of an ingest body (docs/http-api.md): <c>{"points":[{"metric":"m","labels":{"k":"v"},"value":1.5,"timestamp":1800000000000}]}</c>.
/// Parsed and checked whole before any point is written.
/// </summary>
internal sealed class JsonPointBatch
{
    private JsonPointBatch(string[] metrics, Label[][] labels, double[] values, long?[] timestamps)
    {
        Metrics = metrics;
        Labels = labels;
        Values = values;
        Timestamps = timestamps;
    }

    /// <summary>Each point's metric.</summary>
    public string[] Metrics { get; }

    /// <summary>Each point's labels.</summary>
    public Label[][] Labels { get; }

    /// <summary>Each point's value.</summary>
    public double[] Values { get; }

    /// <summary>Each point's timestamp in ms since the epoch, or null to stamp it with the engine's clock.</summary>
    public long?[] Timestamps { get; }

    /// <summary>Parses <paramref name="body"/>; on a malformed body returns null and says why in <paramref name="error"/>.</summary>
    public static JsonPointBatch? Parse(ReadOnlyMemory<byte> body, int maxPoints, int maxLabels, int maxStringBytes, out string? error)
    {
        error = null;
        try
        {
            using JsonDocument document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("points", out JsonElement points) || points.ValueKind != JsonValueKind.Array)
            {
                error = "the body must be an object with a \"points\" array";
                return null;
            }

            int count = points.GetArrayLength();
            if (count > maxPoints)
            {
                error = $"{count} points in one request; at most {maxPoints}";
                return null;
            }

            var metrics = new string[count];
            var labels = new Label[count][];
            var values = new double[count];
            var timestamps = new long?[count];
            int i = 0;
            foreach (JsonElement point in points.EnumerateArray())
            {
                string where = $"points[{i}]";
                if (point.ValueKind != JsonValueKind.Object)
                {
                    error = $"{where} must be an object";
                    return null;
                }

                if (!point.TryGetProperty("metric", out JsonElement metric) || metric.ValueKind != JsonValueKind.String)
                {
                    error = $"{where}.metric must be a string";
                    return null;
                }

                metrics[i] = metric.GetString()!;
                if (Encoding.UTF8.GetByteCount(metrics[i]) > maxStringBytes)
                {
                    error = $"{where}.metric is longer than {maxStringBytes} bytes";
                    return null;
                }

                if (!point.TryGetProperty("value", out JsonElement value) || value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out values[i]))
                {
                    error = $"{where}.value must be a number";
                    return null;
                }

                if (point.TryGetProperty("timestamp", out JsonElement ts) && ts.ValueKind != JsonValueKind.Null)
                {
                    if (ts.ValueKind != JsonValueKind.Number || !ts.TryGetInt64(out long ms))
                    {
                        error = $"{where}.timestamp must be whole milliseconds since the Unix epoch";
                        return null;
                    }

                    timestamps[i] = ms;
                }

                labels[i] = [];
                if (point.TryGetProperty("labels", out JsonElement map) && map.ValueKind != JsonValueKind.Null)
                {
                    if (map.ValueKind != JsonValueKind.Object)
                    {
                        error = $"{where}.labels must be an object of strings";
                        return null;
                    }

                    var list = new List<Label>();
                    foreach (JsonProperty label in map.EnumerateObject())
                    {
                        if (label.Value.ValueKind != JsonValueKind.String)
                        {
                            error = $"{where}.labels.{label.Name} must be a string";
                            return null;
                        }

                        if (list.Count == maxLabels)
                        {
                            error = $"{where} has more than {maxLabels} labels";
                            return null;
                        }

                        string text = label.Value.GetString()!;
                        if (Encoding.UTF8.GetByteCount(label.Name) > maxStringBytes || Encoding.UTF8.GetByteCount(text) > maxStringBytes)
                        {
                            error = $"{where}.labels.{label.Name} is longer than {maxStringBytes} bytes";
                            return null;
                        }

                        list.Add(new Label(label.Name, text));
                    }

                    labels[i] = [.. list];
                }

                i++;
            }

            return new JsonPointBatch(metrics, labels, values, timestamps);
        }
        catch (JsonException e)
        {
            error = "not valid JSON: " + e.Message;
            return null;
        }
    }
}
