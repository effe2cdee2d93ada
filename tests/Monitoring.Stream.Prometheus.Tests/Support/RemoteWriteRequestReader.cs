using Google.Protobuf;
using Snappier;

namespace Monitoring.Stream.Prometheus.Tests.Support;

/// <summary>Decodes a remote-write body with Snappier and Google.Protobuf's reader, independently of the sink's writer.</summary>
internal static class RemoteWriteRequestReader
{
    public static List<DecodedSample> Decode(byte[] compressed)
    {
        byte[] raw = Snappy.DecompressToArray(compressed);
        var result = new List<DecodedSample>();
        var request = new CodedInputStream(raw);
        uint tag;
        while ((tag = request.ReadTag()) != 0)
        {
            Assert.Equal(1, WireFormat.GetTagFieldNumber(tag));
            var series = new CodedInputStream(request.ReadBytes().ToByteArray());
            var labels = new List<KeyValuePair<string, string>>();
            var samples = new List<(double, long)>();
            while ((tag = series.ReadTag()) != 0)
            {
                var inner = new CodedInputStream(series.ReadBytes().ToByteArray());
                if (WireFormat.GetTagFieldNumber(tag) == 1)
                {
                    string name = "", value = "";
                    while ((tag = inner.ReadTag()) != 0)
                    {
                        if (WireFormat.GetTagFieldNumber(tag) == 1)
                        {
                            name = inner.ReadString();
                        }
                        else
                        {
                            value = inner.ReadString();
                        }
                    }

                    labels.Add(new(name, value));
                }
                else
                {
                    double value = 0;
                    long timestamp = 0;
                    while ((tag = inner.ReadTag()) != 0)
                    {
                        if (WireFormat.GetTagFieldNumber(tag) == 1)
                        {
                            value = inner.ReadDouble();
                        }
                        else
                        {
                            timestamp = inner.ReadInt64();
                        }
                    }

                    samples.Add((value, timestamp));
                }
            }

            Assert.Single(samples);
            result.Add(new DecodedSample(labels, samples[0].Item1, samples[0].Item2));
        }

        return result;
    }
}
