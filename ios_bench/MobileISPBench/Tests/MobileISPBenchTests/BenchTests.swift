// The XCTest that `xcodebuild test` runs on the phone: benchmark the model found in Resources/ and attach
// the JSON report to the result bundle, where `mobileisp` reads it with `xcresulttool export attachments`.

import MobileISPBench
import XCTest

final class BenchTests: XCTestCase {
    /// Attachment name mobileisp looks for (mobileisp/ios_bench/xcresult.py RESULT_ATTACHMENT).
    static let attachmentName = "mobileisp-bench-result"

    @MainActor
    func testBenchmarkModel() async throws {
        let config = try BenchConfig()
        let modelURL = try XCTUnwrap(
            Self.modelURL(named: config.modelFile),
            "put one .mlpackage or .mlmodel in Tests/MobileISPBenchTests/Resources (or set MOBILEISP_MODEL)"
        )
        let report = try await Bench.run(modelURL: modelURL, config: config)
        let data = try report.jsonData()

        let attachment = XCTAttachment(data: data, uniformTypeIdentifier: "public.json")
        attachment.name = Self.attachmentName
        attachment.lifetime = .keepAlways
        add(attachment)

        let output = config.resultPath.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("\(Self.attachmentName).json")
        try data.write(to: output, options: .atomic)
        let median = report.runsMs.sorted()[report.runsMs.count / 2]
        print("\(Self.attachmentName): \(report.modelFile) on \(report.device) [\(report.computeUnits)]"
            + " median \(String(format: "%.2f", median)) ms over \(report.runs) runs -> \(output.path)")
    }

    /// The model in the bundle's Resources folder: the one named `name`, or the only one there.
    static func modelURL(named name: String?) -> URL? {
        guard let folder = Bundle.module.url(forResource: "Resources", withExtension: nil),
              let items = try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
        else { return nil }
        let models = items.filter { ["mlpackage", "mlmodel"].contains($0.pathExtension) }
        if let name { return models.first { $0.lastPathComponent == name } }
        return models.count == 1 ? models[0] : nil
    }
}
