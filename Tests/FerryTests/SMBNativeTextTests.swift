import Testing

@testable import FerrySMB

/// The texts libsmbclient reads and writes for security descriptors and DOS attributes.
@Suite struct SMBNativeTextTests {
    /// OWNER_DACL keeps the revision, the owner and the DACL's entries (sorted: libsmbclient
    /// writes them in canonical order), not the group; masks go back in decimal (a hex mask
    /// is read as 0 by libsmbclient 4.17, which would deny everything).
    @Test func descriptorTexts() {
        let read = "REVISION:1,OWNER:S-1-5-21-1-2-3-1000,GROUP:S-1-22-2-1001,ACL:S-1-5-21-1-2-3-1000:0/0/0x001f019f,ACL:S-1-1-0:0/16/0x00120089"
        let kept = SecurityDescriptorText.ownerAndDACL(read)
        #expect(kept == "REVISION:1,OWNER:S-1-5-21-1-2-3-1000,ACL:S-1-1-0:0/16/0x00120089,ACL:S-1-5-21-1-2-3-1000:0/0/0x001f019f")
        #expect(SecurityDescriptorText.forSetting(kept) == "REVISION:1,OWNER:S-1-5-21-1-2-3-1000,ACL:S-1-1-0:0/16/1179785,ACL:S-1-5-21-1-2-3-1000:0/0/2032031")
        #expect(SecurityDescriptorText.withoutOwner(kept) == "REVISION:1,ACL:S-1-1-0:0/16/0x00120089,ACL:S-1-5-21-1-2-3-1000:0/0/0x001f019f")
        #expect(SecurityDescriptorText.withoutOwner("REVISION:1,ACL:S-1-1-0:0/0/1") == nil)
        #expect(SecurityDescriptorText.owner(kept) == "S-1-5-21-1-2-3-1000")
    }

    /// libsmbclient's mapped mode: archive u+x, system g+x, hidden o+x, read-only without u+w.
    @Test func attributesFromTheMappedMode() {
        #expect(SMBLocation.attributes(mappedMode: 0o100644) == 0x00)
        #expect(SMBLocation.attributes(mappedMode: 0o100744) == 0x20)
        #expect(SMBLocation.attributes(mappedMode: 0o100545) == 0x23)
        #expect(SMBLocation.attributes(mappedMode: 0o100554) == 0x25)
        #expect(SMBLocation.fields("MODE:0x8165,SIZE:6,CREATE_TIME:1796642149")["CREATE_TIME"] == "1796642149")
    }
}
